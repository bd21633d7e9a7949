"""Files for SFTP tests and benchmarks: deterministic content, trees of them, their checksums.

Kept apart from the server so that a benchmark or the demo can fill a directory (and check what
came back) without loading asyncssh.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

__all__ = [
    "deterministic_bytes",
    "populate_large",
    "populate_small",
    "populate_tree",
    "sha256_of",
]

_CHUNK = 1024 * 1024


# --- deterministic content ------------------------------------------------------------------------


def deterministic_bytes(name: str, size: int) -> bytes:
    """The content the populate helpers write for a file named ``name``: same name, same bytes.

    Pseudo-random (not a repeated pattern) so that a transfer that shuffles or repeats blocks
    changes the checksum. ``random.Random`` seeded with a str is stable across processes and
    Python versions (it hashes the seed with SHA-512, not ``hash()``).
    """
    return random.Random(name).randbytes(size)


def _write_deterministic(path: Path, name: str, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(name)
    with path.open("wb") as file:
        remaining = size
        while remaining > 0:
            n = min(_CHUNK, remaining)
            file.write(rng.randbytes(n))
            remaining -= n


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"size must be >= 0 bytes, got {size}")


def populate_small(
    root: str | os.PathLike[str], dir: str = "small", count: int = 1000, size: int = 10 * 1024
) -> list[str]:
    """Write ``count`` files of ``size`` bytes in ``root/dir``; return their root-relative paths.

    Names are ``f00000.bin``, ``f00001.bin``, ...; the content of each is
    ``deterministic_bytes(relative_path, size)``, so checksums are reproducible.
    """
    _check_size(size)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    base = Path(root)
    paths = []
    for i in range(count):
        rel = f"{dir}/f{i:05d}.bin"
        _write_deterministic(base / rel, rel, size)
        paths.append(rel)
    (base / dir).mkdir(parents=True, exist_ok=True)
    return paths


def populate_tree(
    root: str | os.PathLike[str],
    dir: str = "tree",
    depth: int = 4,
    fanout: int = 3,
    files_per_dir: int = 3,
    size: int = 1024,
) -> list[str]:
    """Write a directory tree under ``root/dir``; return the root-relative paths of its files.

    ``dir`` holds ``files_per_dir`` files and ``fanout`` sub-directories, each built the same way,
    down to ``depth`` levels of sub-directories (``depth=0``: ``dir`` only). Defaults give 121
    directories and 363 files of 1 KiB.
    """
    _check_size(size)
    if depth < 0 or fanout < 0 or files_per_dir < 0:
        raise ValueError("depth, fanout and files_per_dir must be >= 0")
    base = Path(root)
    paths: list[str] = []

    def build(rel_dir: str, level: int) -> None:
        (base / rel_dir).mkdir(parents=True, exist_ok=True)
        for i in range(files_per_dir):
            rel = f"{rel_dir}/file{i}.bin"
            _write_deterministic(base / rel, rel, size)
            paths.append(rel)
        if level < depth:
            for j in range(fanout):
                build(f"{rel_dir}/d{j}", level + 1)

    build(dir, 0)
    return paths


def populate_large(
    root: str | os.PathLike[str], name: str = "large.bin", size: int = 200 * 1024 * 1024
) -> str:
    """Write one file of ``size`` bytes at ``root/name`` in 1 MiB chunks; return ``name``."""
    _check_size(size)
    _write_deterministic(Path(root) / name, name, size)
    return name


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- the server -----------------------------------------------------------------------------------
