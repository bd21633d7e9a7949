"""Fuzzing the SFTP adapter's parsers of remote data: only declared hookbridge errors come out.

What the server sends and the adapter reads: file attributes (``stat``, listings), directory
entry names, ``realpath`` answers checked against the root, and status answers (code and reason
text) turned into errors. Each is fed what asyncssh can decode from any bytes (the wire form is
built from arbitrary fields, or is arbitrary bytes), and must give an entry, ``None`` for ``.``
and ``..``, or a declared error: :class:`~hookbridge.PathRefused` for a name or path that would
leave its directory or root, a :class:`~hookbridge.HookBridgeError` for a status. Where asyncssh
itself cannot decode a packet, its client reports ``SFTPBadMessage``, which must translate to a
:class:`~hookbridge.TransportError`.

Examples per test: the ``hookbridge-fuzz`` profile (tests/reliability/conftest.py).
"""

from __future__ import annotations

import contextlib
import math
import posixpath

import asyncssh
from asyncssh.packet import PacketDecodeError, SSHPacket, String, UInt32
from hypothesis import given, settings
from hypothesis import strategies as st

from hookbridge import HookBridgeError, PathRefused, RemoteError, TransportError
from hookbridge.adapters.sftp._entries import _listed, entry_of
from hookbridge.adapters.sftp._paths import RemoteRoot, check_name
from hookbridge.adapters.sftp._translate import translate

FUZZ = settings.get_profile("hookbridge-fuzz")
SECRET = "fuzz-Pa55/&= secret"

# -- what an SFTP server can send -----------------------------------------------------------------

U8 = st.integers(0, 2**8 - 1)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
ATTRS = st.builds(
    asyncssh.SFTPAttrs,
    type=U8 | st.sampled_from([1, 2, 3, 4, 5]),
    size=st.none() | U64,
    permissions=st.none() | U32 | st.sampled_from([0o040755, 0o100644, 0o120777, 0o020666]),
    mtime=st.none() | I64,
    mtime_ns=st.none() | st.integers(-(2**63) * 10**9, 2**64 * 10**9),
    uid=st.none() | U32,
    owner=st.none() | st.text(max_size=8),
)
NAMES = st.text(max_size=30) | st.sampled_from(
    [".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "x\x00y", "..\\..", "", " ", "~", "a/../.."]
)
DIRECTORIES = st.sampled_from([".", "", "/", "/data", "/data/in", "rel/dir"])
PATHS = st.text(max_size=40) | st.sampled_from(
    ["../x", "/x", "//x", "a/../../x", "/jail/../x", "/jail/./x", "./", "/jail", "/jailbreak"]
)


def _check_entry(name: str, directory: str, attrs: asyncssh.SFTPAttrs) -> None:
    entry = _listed(directory, asyncssh.SFTPName(name, "", attrs))
    if entry is None:
        assert name in (".", "..")
        return
    assert entry.name == name
    assert "/" not in name and "\x00" not in name and name not in ("", ".", "..")
    # The entry stays in its directory: joined, it is one name below it.
    parent = posixpath.dirname(entry.path)
    assert parent == ("" if directory in (".", "") else directory.rstrip("/") or "/")
    assert [entry.is_dir, entry.is_file, entry.is_symlink].count(True) <= 1
    assert entry.permissions is None or 0 <= entry.permissions <= 0o7777
    assert entry.mtime is None or math.isfinite(entry.mtime)


@FUZZ
@given(name=NAMES, directory=DIRECTORIES, attrs=ATTRS)
def test_a_listed_entry_is_an_entry_of_its_directory_or_refused(
    name: str, directory: str, attrs: asyncssh.SFTPAttrs
) -> None:
    refused: PathRefused | None = None
    try:
        _check_entry(name, directory, attrs)
    except PathRefused as exc:
        refused = exc
    assert refused is None or refused.path is not None


@FUZZ
@given(attrs=ATTRS, name=st.text(max_size=10))
def test_any_attributes_make_an_entry(attrs: asyncssh.SFTPAttrs, name: str) -> None:
    entry = entry_of(name, "/x/" + name, attrs)
    assert entry.size == attrs.size
    assert [entry.is_dir, entry.is_file, entry.is_symlink].count(True) <= 1
    assert entry.permissions is None or 0 <= entry.permissions <= 0o7777
    assert entry.mtime is None or math.isfinite(entry.mtime)


@FUZZ
@given(version=st.integers(3, 6), data=st.binary(max_size=120))
def test_a_name_packet_of_any_bytes_is_an_entry_or_a_declared_error(
    version: int, data: bytes
) -> None:
    # asyncssh decodes the packet; its client turns a decode failure (or a name that is not
    # UTF-8) into SFTPBadMessage, which the adapter must report as a transport error. Its own
    # verdict on a malformed field may also be a status (FX_OWNER_INVALID for an owner name
    # that is not UTF-8): a declared error too.
    error: HookBridgeError | None = None
    try:
        item = asyncssh.SFTPName.decode(SSHPacket(data), version)
        assert isinstance(item.filename, bytes)
        name = item.filename.decode("utf-8")
    except asyncssh.SFTPError as exc:
        error = translate(exc, conn_id="fuzz", path="/d")
    except (PacketDecodeError, UnicodeDecodeError) as exc:
        error = translate(asyncssh.SFTPBadMessage(str(exc)), conn_id="fuzz", path="/d")
        assert isinstance(error, TransportError)
    if error is not None:
        assert isinstance(error, HookBridgeError)
        return
    with contextlib.suppress(PathRefused):
        _check_entry(name, "/d", item.attrs)


@FUZZ
@given(
    version=st.integers(3, 6),
    name=st.binary(max_size=12),
    flags=U32,
    fields=st.lists(U64, max_size=6),
    tail=st.binary(max_size=16),
)
def test_a_name_packet_built_from_any_fields_is_an_entry_or_a_declared_error(
    version: int, name: bytes, flags: int, fields: list[int], tail: bytes
) -> None:
    # Well-framed packets (a name, then attribute flags and values) reach deeper than raw bytes.
    body = String(name) + (String(b"long") if version == 3 else b"") + UInt32(flags)
    body += b"".join(value.to_bytes(8, "big") for value in fields) + tail
    test_a_name_packet_of_any_bytes_is_an_entry_or_a_declared_error.hypothesis.inner_test(  # type: ignore[attr-defined]
        version, body
    )


@FUZZ
@given(code=U32 | st.integers(0, 31), reason=st.binary(max_size=60), lang=st.binary(max_size=8))
def test_any_status_answer_becomes_a_declared_error_without_secrets(
    code: int, reason: bytes, lang: bytes
) -> None:
    reason = reason + SECRET.encode()  # a server that echoes the password in its reason
    packet = SSHPacket(UInt32(code) + String(reason) + String(lang))
    try:
        status = asyncssh.SFTPError.construct(packet, "strict")
    except (asyncssh.SFTPError, PacketDecodeError) as exc:
        raw: BaseException = exc
        if isinstance(exc, PacketDecodeError):
            raw = asyncssh.SFTPBadMessage(str(exc))
        error = translate(raw, conn_id="fuzz", path="/p", secrets=[SECRET])
        assert isinstance(error, TransportError)
        return
    if status is None:
        assert code == 0  # FX_OK is no error
        return
    error = translate(status, conn_id="fuzz", path="/p", secrets=[SECRET])
    assert isinstance(error, HookBridgeError)
    assert SECRET not in str(error) and SECRET not in repr(error)
    if isinstance(error, RemoteError):
        assert error.code == code


@FUZZ
@given(root=st.sampled_from(["/", "/jail", "/jail/in", "//jail"]), path=PATHS)
def test_a_path_resolves_inside_the_root_or_is_refused(root: str, path: str) -> None:
    jail = RemoteRoot(root)
    try:
        resolved = jail.resolve(path)
    except PathRefused:
        return
    assert jail.contains(resolved)
    assert ".." not in resolved.split("/")
    assert "\x00" not in resolved


@FUZZ
@given(root=st.sampled_from(["/", "/jail", "/jail/in"]), real=PATHS)
def test_a_realpath_answer_is_inside_the_root_only_when_it_really_is(root: str, real: str) -> None:
    # What _confine does with the server's realpath answer, whatever the server says.
    jail = RemoteRoot(root)
    normal = posixpath.normpath(real)
    if jail.contains(normal, root):
        assert normal.startswith("/")
        assert root == "/" or normal == root or normal.startswith(root + "/")
        assert ".." not in normal.split("/")


@FUZZ
@given(name=NAMES)
def test_an_entry_name_is_safe_or_refused(name: str) -> None:
    try:
        checked = check_name(name, "/d")
    except PathRefused:
        return
    assert posixpath.dirname(posixpath.join("/d", checked)) == "/d"
