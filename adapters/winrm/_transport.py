"""pywinrm's HTTP transport, bounded and closed for good: an answer cap, and a real close.

The cap on the size of one WS-Management answer is enforced before requests buffers it.

pywinrm posts with ``requests`` without ``stream=True``, so a server that answers one endless
body would be read into memory whole. requests calls a session's response hooks after the
headers arrive and before it reads the body (``Session.send`` reads ``content`` after the
hooks), so a hook can read the body itself, in bounded chunks, and refuse it past the cap. The
hook is installed in every session the transport builds (pywinrm builds a new one after
``close_session``).
"""

from __future__ import annotations

from typing import Any

import requests
from winrm.transport import Transport

from hookbridge import ResponseTooLarge

__all__ = ["cap_answers", "close_transport"]

_CHUNK = 64 * 1024


def cap_answers(transport: Transport, limit: int) -> None:
    """Make every answer ``transport`` receives refuse more than ``limit`` bytes."""
    build = transport.build_session

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise ResponseTooLarge(
                f"a WS-Management answer declared {int(declared)} bytes, more than "
                f"max_envelope_size={limit}.",
                limit=limit,
            )
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > limit:
                response.close()  # the rest is never read; the connection is not reused
                raise ResponseTooLarge(
                    f"a WS-Management answer went on past max_envelope_size={limit} bytes.",
                    limit=limit,
                )
        response._content = bytes(body)  # what requests would have read, now bounded
        response.close()
        return response

    def build_session() -> requests.Session:
        session = build()
        hooks = session.hooks.setdefault("response", [])
        if hook not in hooks:
            hooks.append(hook)
        return session

    transport.build_session = build_session  # type: ignore[method-assign]


def close_transport(transport: Transport) -> None:
    """Close the transport's session and, now, every connection it pooled.

    ``Session.close`` only empties urllib3's PoolManager; since urllib3 2 a pool closes its
    connections when it is garbage collected, and a pool is kept alive by any error that holds one
    of its responses (pywinrm's WinRMTransportError chains the HTTPError, in a reference cycle
    through its traceback), so a connection would stay open on the server until the cyclic
    collector runs. The pools are closed first, explicitly.
    """
    session = transport.session
    if session is not None:
        for adapter in session.adapters.values():
            manager = getattr(adapter, "poolmanager", None)
            if manager is None:
                continue
            for key in list(manager.pools.keys()):
                pool = manager.pools.get(key)
                if pool is not None:
                    pool.close()
    transport.close_session()
