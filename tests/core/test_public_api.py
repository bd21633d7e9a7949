"""The public API: every exported name imports, is documented, and the core stays light."""

from __future__ import annotations

import subprocess
import sys

import hookbridge


def test_every_exported_name_exists_and_is_documented() -> None:
    undocumented = []
    for name in hookbridge.__all__:
        obj = getattr(hookbridge, name)
        if callable(obj) and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert not undocumented, f"exported without a docstring: {undocumented}"
    assert sorted(hookbridge.__all__) == sorted(set(hookbridge.__all__))


def test_importing_the_core_imports_no_airflow_no_adapter_no_asyncio_library() -> None:
    code = (
        "import sys, hookbridge; "
        "bad = [m for m in ('airflow', 'aiohttp', 'asyncssh', 'hookbridge.adapters', 'trio') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("hookbridge").joinpath("py.typed").is_file()
