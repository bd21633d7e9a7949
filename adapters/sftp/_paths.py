"""Remote path confinement: keep every path an adapter sends inside its ``root``.

Two checks, from cheap to exact:

1. :meth:`RemoteRoot.resolve` is purely lexical and sends nothing: the path is joined to the root
   (relative paths are relative to it), normalised so that the server never sees ``..``, and
   refused with :class:`~hookbridge.PathRefused` when it lands outside. ``..`` escapes and
   absolute paths elsewhere stop here.
2. :func:`server_realpath` asks the server where a path really leads (SFTP ``realpath``) so that
   a symbolic link inside the root that points outside is refused before the operation itself is
   sent. The adapter runs it once per single-path operation and once per walked directory; the
   entries a directory listing reports as regular files or directories (``lstat`` attributes) are
   not links and need no further question.

The check guards against paths and links that exist when it runs. A user on the server who swaps
a directory for a link between the check and the operation is outside what a client can prevent:
a server-side chroot is the real boundary.
"""

from __future__ import annotations

import posixpath
from typing import Any

from hookbridge import PathRefused

__all__ = ["RemoteRoot", "check_name", "server_realpath"]


def _normalise(path: str) -> str:
    normal = posixpath.normpath(path)
    # POSIX keeps a leading "//" as implementation-defined; SFTP servers treat it as "/".
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def _check_text(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"remote paths are str, got {type(path).__name__}: {path!r}")
    if not path:
        raise PathRefused("an empty remote path was given; name a file or directory.", path=path)
    if "\x00" in path:
        raise PathRefused(
            "the remote path contains a NUL character, which no SFTP server accepts.", path=path
        )
    return path


def check_name(name: str, directory: str) -> str:
    """Refuse a directory entry name that could leave its directory once joined to a local path.

    A hostile server can answer READDIR with ``../x`` or ``a/b``; such names are never written.
    """
    if not name or name in (".", "..") or "/" in name or "\x00" in name or "\\" in name:
        raise PathRefused(
            f"the server listed an unsafe entry name {name!r} in {directory!r}; it was skipped "
            "rather than joined to a local path.",
            path=posixpath.join(directory, name),
        )
    return name


class RemoteRoot:
    """The directory an adapter's remote paths must stay in, or no confinement (``root=None``)."""

    __slots__ = ("root",)

    def __init__(self, root: str | None) -> None:
        if root is None:
            self.root: str | None = None
            return
        _check_text(root)
        if not root.startswith("/"):
            raise ValueError(
                f"root must be an absolute server path such as '/data/incoming', got {root!r}"
            )
        self.root = _normalise(root)

    def __repr__(self) -> str:
        return f"RemoteRoot({self.root!r})"

    def resolve(self, path: str) -> str:
        """Return the path to send: joined to the root and normalised; refuse it outside the root.

        Without a root the path is only normalised, and relative paths stay relative (the server
        resolves them against the login directory).
        """
        _check_text(path)
        if self.root is None:
            return _normalise(path)
        resolved = _normalise(posixpath.join(self.root, path))
        if not self.contains(resolved):
            raise PathRefused(
                f"{path!r} resolves to {resolved!r}, outside the adapter's root {self.root!r}; "
                "nothing was sent. Use a path inside the root, or open the adapter with a wider "
                "root.",
                path=path,
            )
        return resolved

    def contains(self, resolved: str, root: str | None = None) -> bool:
        """Whether an absolute normalised path is the root or below it."""
        base = root if root is not None else self.root
        if base is None:
            return True
        if base == "/":
            return resolved.startswith("/")
        return resolved == base or resolved.startswith(base + "/")


async def server_realpath(sftp: Any, path: str) -> str:
    """The server's canonical form of ``path``, following every symbolic link on the way.

    A path that does not exist yet (a file about to be written, a directory ``makedirs`` will
    create) resolves as its deepest existing ancestor plus the missing names, which cannot be links
    since they do not exist. A path that exists but that the server will not resolve (a link to
    somewhere outside the server's own jail) is refused: it cannot be shown to stay inside.
    """
    import asyncssh

    try:
        return str(await sftp.realpath(path))
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
        pass
    try:
        await sftp.lstat(path)
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
        parent = posixpath.dirname(path)
        if not parent or parent == path:
            raise
        return posixpath.join(await server_realpath(sftp, parent), posixpath.basename(path))
    raise PathRefused(
        f"{path!r} exists but the server will not resolve it (a link to a place outside what it "
        "serves); it was refused and nothing else was sent.",
        path=path,
    )
