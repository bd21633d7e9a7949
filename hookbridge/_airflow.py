"""The one place the core touches Airflow: async connection lookup, imported only when used."""

from __future__ import annotations

from typing import Any

import anyio

from ._clock import on_asyncio
from ._errors import ConfigurationError

__all__ = ["connection_extra", "get_connection"]


def _env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


async def get_connection(conn_id: str, hook: Any = None) -> Any:
    """Resolve an Airflow connection on the event loop without a blocking lookup.

    Goes through the providers' async path (``get_async_connection``): a synchronous
    ``get_connection`` on the loop thread deadlocks inside a running task on Airflow < 3.3.2.
    That path is asyncio-only; under another backend (trio), where no Airflow task runner can
    be on the loop, the synchronous lookup runs on a worker thread instead.
    """
    try:
        from airflow.providers.common.compat.connection import get_async_connection
    except ImportError as exc:
        raise ConfigurationError(
            "Airflow is not installed, so the connection cannot be looked up. Install the "
            "adapter's extra (for example pip install 'hookbridge[http]') or pass adapter= and "
            "the options explicitly.",
            conn_id=conn_id,
        ) from exc
    try:
        if on_asyncio():
            return await get_async_connection(conn_id, hook)
        from airflow.sdk import BaseHook

        return await anyio.to_thread.run_sync(BaseHook.get_connection, conn_id)
    except Exception as exc:
        # AirflowNotFoundException lives in different modules across Airflow versions: match on
        # the name rather than importing each of them.
        if type(exc).__name__ in {"AirflowNotFoundException", "ConnectionNotFound"}:
            raise ConfigurationError(
                f"the connection is not defined. Define it in Airflow (UI, CLI or a secrets "
                f"backend) or as the environment variable {_env_var(conn_id)} holding a URI or "
                f'JSON such as {{"conn_type": "http", "host": "..."}}.',
                conn_id=conn_id,
            ) from exc
        raise


async def connection_extra(conn: Any) -> dict[str, Any]:
    """The connection's extra as a dict, read through the async path (secret masking is async)."""
    try:
        from airflow.providers.common.compat.connection import get_async_extra_dejson
    except ImportError:  # pragma: no cover - older compat provider
        extra = conn.extra_dejson
    else:
        extra = await get_async_extra_dejson(conn) if on_asyncio() else conn.extra_dejson
    return dict(extra or {})
