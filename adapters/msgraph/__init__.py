"""Microsoft Graph adapter: ``hookbridge.open(conn_id)`` for an Airflow ``msgraph`` connection."""

from ._adapter import MSGraphAdapter
from ._batch import MAX_BATCH, BatchRequest
from ._delta import DeltaStream

__all__ = ["MAX_BATCH", "BatchRequest", "DeltaStream", "MSGraphAdapter"]
