"""The public API: every exported name imports, is documented, and the core stays light."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import hookbridge
import hookbridge.adapter

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", [hookbridge, hookbridge.adapter], ids=lambda m: m.__name__)
def test_every_exported_name_exists_and_is_documented(module: ModuleType) -> None:
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        # Functions and classes; type aliases (JsonPath, OptionSource) carry no docstring.
        is_code = inspect.isfunction(obj) or inspect.isclass(obj)
        if is_code and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert not undocumented, f"exported without a docstring: {undocumented}"
    assert sorted(module.__all__) == sorted(set(module.__all__))


def test_adapters_import_only_the_public_sdk() -> None:
    """Built-in adapters stand on what a provider author gets: hookbridge, hookbridge.adapter."""
    offenders = []
    files = sorted((ROOT / "adapters").rglob("*.py"))
    assert len(files) > 10  # the scan looks where the adapters are
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "hookbridge" and any(part.startswith("_") for part in parts[1:]):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, "adapters import private hookbridge modules:\n" + "\n".join(offenders)


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
