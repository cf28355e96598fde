"""The arrows between the layers (the house plan): read from the source's import statements, nothing is imported.

- A use case (a module of shared/services) imports no other use case: what two of them share is a domain module
  (shared/manifests.py, shared/processing/, shared/limits/, ...). Only `shared.services.context` is shared.
- shared/ never imports azure.functions, nor functions/: the edge depends on the application, never the reverse.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
SERVICES = SHARED / "services"
SHARED_SERVICE_MODULES = {"shared.services", "shared.services.context"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str | None = None) -> Iterator[str]:
    """Every module an import statement of this file (module `module`, by default from its path) names, at any
    depth (imports inside functions count too); `from package import name` yields both `package` and
    `package.name` (the name may be a module)."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _sideways(module: str, names: set[str]) -> list[str]:
    """The other use cases among these imported names."""
    return sorted(
        name
        for name in names
        if name.startswith("shared.services.")
        and name not in SHARED_SERVICE_MODULES
        and not name.startswith("shared.services.context.")
        and name != module
        and not name.startswith(f"{module}.")
    )


def test_the_import_reader_sees_every_form_of_import(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "import shared.services.jobs\n"
        "from shared.services import expand\n"
        "from . import chunks\n"
        "from .rollup import roll_up_status\n"
        "def f():\n"
        "    import azure.functions as func\n"
    )
    found = set(imported_modules(source, "shared.services.probe"))
    assert {
        "shared.services.jobs",
        "shared.services.expand",
        "shared.services.chunks",
        "shared.services.rollup",
        "azure.functions",
    } <= found
    assert _sideways("shared.services.probe", found) == [
        "shared.services.chunks",
        "shared.services.expand",
        "shared.services.jobs",
        "shared.services.rollup",
        "shared.services.rollup.roll_up_status",
    ]
    assert _sideways("shared.services.probe", {"shared.services.context", "shared.services.context.AppContext"}) == []


@pytest.mark.parametrize("path", _sources(SERVICES), ids=lambda p: p.name)
def test_no_use_case_imports_another(path: Path) -> None:
    this = _module_name(path)
    sideways = _sideways(this, set(imported_modules(path)))
    assert not sideways, f"{this} imports other use cases {sideways}: move what they share out of shared/services"


def test_shared_never_imports_the_functions_layer() -> None:
    offenders = {
        _module_name(path): sorted(
            name
            for name in set(imported_modules(path))
            if name == "azure.functions" or name.startswith("azure.functions.") or name.split(".")[0] == "functions"
        )
        for path in _sources(SHARED)
    }
    assert not {module: names for module, names in offenders.items() if names}
