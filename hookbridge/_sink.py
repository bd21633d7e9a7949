"""Sinks: stream results too big for XCom to storage as JSON lines, and hand XCom a reference.

A :class:`Sink` writes JSON lines in parts (``part-00000.jsonl``, ``part-00001.jsonl.gz``, ...)
under a directory: a local path, or any ``airflow.sdk.ObjectStoragePath`` (``s3://``, ``gs://``,
``file://``: a string with ``://`` is turned into one). Items are encoded on the event loop into a
batch of bounded size, and each batch is compressed and written on a worker thread (storage
libraries block), so memory stays the same whatever the number of items. The sink returns a small
JSON-safe reference (path, parts, items, bytes) for XCom or a trigger event; :func:`read_sink`
streams the items back from it, in order.

A part is written once and closed; it is never appended to (object stores cannot append), so a
:class:`~hookbridge.Checkpoint` commits the sink by closing its open part, and a retry rewinds
it by deleting the parts after the checkpoint's position.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import anyio

from ._errors import ConfigurationError

__all__ = ["Sink", "SinkReader", "read_sink"]

_REFERENCE_KEY = "hookbridge_sink"
_VERSION = 1
_READ_CHUNK = 128 << 10  # bytes of lines read (and decoded) per worker-thread hop


def _storage_path(path: Any, field: str) -> Any:
    """A local ``Path``, or an ``ObjectStoragePath`` for ``scheme://`` strings; objects as given."""
    if isinstance(path, str):
        if "://" in path:
            try:
                from airflow.sdk import ObjectStoragePath
            except ImportError as exc:
                raise ConfigurationError(
                    f"{path!r} is a URL, which needs Airflow's ObjectStoragePath (pip install "
                    f"apache-airflow); give a local path otherwise",
                    field=field,
                ) from exc
            return ObjectStoragePath(path)
        return Path(path)
    if isinstance(path, os.PathLike) and not hasattr(path, "fs"):
        return Path(path)
    if not all(hasattr(path, name) for name in ("open", "mkdir", "glob", "unlink")):
        raise ConfigurationError(
            f"{field} must be a local path, a 'scheme://...' URL or an ObjectStoragePath, "
            f"got {type(path).__name__}",
            field=field,
        )
    return path


def _part_name(number: int, compression: str | None) -> str:
    return f"part-{number:05d}.jsonl" + (".gz" if compression == "gzip" else "")


class Sink:
    """JSON lines in parts under ``path``, written with bounded memory; see the module docstring.

    ::

        async with hookbridge.Sink("s3://bucket/run-1/details", compression="gzip") as sink:
            async with api.map(fetch, ids, max_at_once=50) as results:
                async for value in results:
                    await sink.write(value)
        return sink.reference()        # small: goes through XCom

    ``batch_items``/``batch_bytes`` bound what is buffered before a write; a new part starts
    after ``part_items`` items or ``part_bytes`` stored bytes. ``default`` is passed to
    ``json.dumps`` for values it cannot encode. The directory should be empty or hold only this
    sink's parts: parts left over from an earlier run are deleted when the sink opens (unless a
    Checkpoint restores the position first, which keeps the parts it accounts for).
    """

    def __init__(
        self,
        path: Any,
        *,
        compression: Literal["gzip"] | None = None,
        batch_items: int = 2000,
        batch_bytes: int = 1 << 20,
        part_items: int = 1_000_000,
        part_bytes: int = 256 << 20,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        if compression not in (None, "gzip"):
            raise ConfigurationError(
                f"compression must be None or 'gzip', got {compression!r}", field="compression"
            )
        for name, value in (
            ("batch_items", batch_items),
            ("batch_bytes", batch_bytes),
            ("part_items", part_items),
            ("part_bytes", part_bytes),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"{name} must be an integer >= 1, got {value!r}", field=name
                )
        self.path = _storage_path(path, "path")
        self.compression = compression
        self._batch_items = batch_items
        self._batch_bytes = batch_bytes
        self._part_items = part_items
        self._part_bytes = part_bytes
        self._encode = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, default=default
        ).encode
        self._buffer: list[str] = []
        self._buffered = 0  # characters in _buffer
        self._file: Any = None  # the open part
        self._compressor: Any = None
        self._part_items_written = 0
        self._part_bytes_written = 0
        self.parts = 0  #: parts started so far (closed, plus the open one)
        self.items = 0  #: items written (buffered ones included)
        self.bytes = 0  #: bytes stored (compressed when compressed)
        self._state: Literal["new", "open", "closed"] = "new"
        self._clean = True  # parts left by earlier runs still to delete before the first write

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Sink:
        if self._state != "new":
            raise ConfigurationError("a Sink is opened once; create a new one")
        self._state = "open"
        await anyio.to_thread.run_sync(lambda: self.path.mkdir(parents=True, exist_ok=True))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Shielded: the open part's file must be closed even when the task is cancelled.
        with anyio.CancelScope(shield=True):
            try:
                await self.commit()
            finally:
                self._state = "closed"

    def reference(self) -> dict[str, Any]:
        """The small JSON-safe reference to everything written: give it to :func:`read_sink`."""
        return {
            _REFERENCE_KEY: _VERSION,
            "path": str(self.path),
            "parts": self.parts,
            "items": self.items,
            "bytes": self.bytes,
            "compression": self.compression,
        }

    # -- writing ---------------------------------------------------------------------------------

    async def write(self, item: Any) -> None:
        """Add one JSON-encodable item; every ``batch_items`` items go to storage."""
        if self._state != "open":
            self._refuse()
        line = self._encode(item)
        self._buffer.append(line)
        self._buffered += len(line)
        self.items += 1
        if len(self._buffer) >= self._batch_items or self._buffered >= self._batch_bytes:
            await self._flush()

    async def write_many(self, items: Iterable[Any]) -> None:
        """Add every item of a (sync) iterable: encoded a batch at a time, faster than write()."""
        if self._state != "open":
            self._refuse()
        iterator = iter(items)
        encode = self._encode
        while True:
            room = max(1, self._batch_items - len(self._buffer))
            lines = list(map(encode, islice(iterator, room)))
            if not lines:
                return
            self._buffer.extend(lines)
            self._buffered += sum(map(len, lines))
            self.items += len(lines)
            if len(self._buffer) >= self._batch_items or self._buffered >= self._batch_bytes:
                await self._flush()

    def _refuse(self) -> None:
        raise ConfigurationError(
            "the Sink is not open: write inside `async with Sink(...) as sink:`", field="sink"
        )

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data = ("\n".join(self._buffer) + "\n").encode()
        count = len(self._buffer)
        self._buffer = []
        self._buffered = 0
        # Shielded: the batch has left the buffer and is counted in `items`, so a cancellation
        # delivered before the worker thread starts (anyio checkpoints first) would lose it. The
        # write is bounded by the batch size; the cancellation arrives at the caller's next await.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._store, data, count)

    def _store(self, data: bytes, count: int) -> None:
        # On a worker thread: opening, compressing and writing all block.
        if self._clean:
            self._delete_parts(self.parts)
            self._clean = False
        if self._file is not None and (
            self._part_items_written >= self._part_items
            or self._part_bytes_written >= self._part_bytes
        ):
            self._close_part()
        if self._file is None:
            self._file = (self.path / _part_name(self.parts, self.compression)).open("wb")
            self.parts += 1
            self._part_items_written = self._part_bytes_written = 0
            if self.compression == "gzip":
                self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing
        if self._compressor is not None:
            data = self._compressor.compress(data)
        self._write_part(data)
        self._part_items_written += count

    def _write_part(self, data: bytes) -> None:
        if data:
            self._file.write(data)
            self._part_bytes_written += len(data)
            self.bytes += len(data)

    def _close_part(self) -> None:
        if self._file is None:
            return
        try:
            if self._compressor is not None:
                self._write_part(self._compressor.flush())
        finally:
            file, self._file, self._compressor = self._file, None, None
            file.close()

    def _delete_parts(self, first: int) -> None:
        for part in list(self.path.glob("part-*.jsonl*")):
            name = str(getattr(part, "name", part))
            digits = name[len("part-") :].split(".", 1)[0]
            if digits.isdigit() and int(digits) >= first:
                part.unlink()

    async def commit(self) -> dict[str, Any]:
        """Write what is buffered and close the open part; return the position (a small dict).

        Every item written before the call is then in storage. The next write starts a new part.
        """
        if self._state == "new":
            self._refuse()
        await self._flush()
        await anyio.to_thread.run_sync(self._close_part)
        return {"parts": self.parts, "items": self.items, "bytes": self.bytes}

    async def restore(self, position: dict[str, Any]) -> None:
        """Rewind to a ``commit()`` position: parts after it are deleted, its counts kept."""
        if self._state != "open" or self.items:
            raise ConfigurationError(
                "restore() a sink right after opening it, before any write", field="sink"
            )
        try:
            parts = int(position.get("parts", 0))
            items = int(position.get("items", 0))
            stored = int(position.get("bytes", 0))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"not a sink position: {position!r}", field="sink") from exc
        self.parts, self.items, self.bytes = parts, items, stored
        await anyio.to_thread.run_sync(self._delete_parts, parts)
        self._clean = False


# -- reading ---------------------------------------------------------------------------------------


def _check_reference(reference: Any) -> dict[str, Any]:
    if not isinstance(reference, dict) or reference.get(_REFERENCE_KEY) != _VERSION:
        raise ConfigurationError(
            "not a hookbridge sink reference: pass the dict that Sink.reference() returned "
            "(it survives XCom and json.dumps unchanged)",
            field="reference",
        )
    return reference


class SinkReader:
    """The items a sink wrote, in order: ``async for`` (reads on worker threads) or ``for``."""

    def __init__(self, reference: dict[str, Any], path: Any = None) -> None:
        ref = _check_reference(reference)
        self.reference = ref
        self._path = _storage_path(ref["path"] if path is None else path, "path")
        self._parts = int(ref["parts"])
        self._gzip = ref.get("compression") == "gzip"
        self._part = 0
        self._file: Any = None
        self._raw: Any = None
        self._lines: Iterator[Any] = iter(())
        self._pending = b""

    def _open_next(self) -> bool:
        if self._part >= self._parts:
            return False
        raw = (self._path / _part_name(self._part, "gzip" if self._gzip else None)).open("rb")
        self._file = gzip.GzipFile(fileobj=raw, mode="rb") if self._gzip else raw
        self._raw = raw
        self._part += 1
        return True

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            finally:
                if file is not self._raw:
                    self._raw.close()

    def _read_chunk(self) -> list[Any] | None:
        """Decoded items of about ``_READ_CHUNK`` bytes of lines; None after the last part."""
        while True:
            if self._file is None and not self._open_next():
                return None
            data = self._file.read(_READ_CHUNK)
            if not data:
                self._close()
                if self._pending:
                    raise ConfigurationError(
                        f"part {self._part - 1} of {self.reference['path']} ends inside a line: "
                        "it was not written by a Sink that was committed",
                        field="reference",
                    )
                continue
            data = self._pending + data
            cut = data.rfind(b"\n") + 1
            self._pending = data[cut:]
            if cut:
                # One parse per chunk: a line holds no raw newline (JSON escapes it in strings),
                # so the lines joined by commas are a JSON array.
                items: list[Any] = json.loads(b"[" + data[: cut - 1].replace(b"\n", b",") + b"]")
                return items

    def __iter__(self) -> Iterator[Any]:
        try:
            while (chunk := self._read_chunk()) is not None:
                yield from chunk
        finally:
            self._close()

    def __aiter__(self) -> SinkReader:
        return self

    async def __anext__(self) -> Any:
        for item in self._lines:
            return item
        chunk = await anyio.to_thread.run_sync(self._read_chunk)
        if chunk is None:
            raise StopAsyncIteration
        self._lines = iter(chunk)
        return next(self._lines)

    async def aclose(self) -> None:
        """Close the open part (``async for`` that ends early should call it, or use ``with``)."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    async def __aenter__(self) -> SinkReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def read_sink(reference: dict[str, Any], path: Any = None) -> SinkReader:
    """Stream back what a :class:`Sink` wrote, from its ``reference()``.

    ``path`` overrides the reference's (a URL string): pass the ``ObjectStoragePath`` itself
    when it needs a ``conn_id`` other than the storage's default one.

    ``async with read_sink(ref) as items: async for item in items: ...`` in async code (the
    reading happens on worker threads, 128 KiB per hop); ``for item in read_sink(ref)`` in a
    plain task.
    """
    return SinkReader(reference, path)
