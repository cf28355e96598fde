"""Every Bicep file parses offline (pycep), and main.bicep's modules are exactly the files in modules/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep_model import BICEP_DIR, MAIN, MODULES, bicep_files, parse


def test_there_is_bicep_to_check() -> None:
    assert MAIN.is_file(), "infra/bicep/main.bicep is missing"
    assert len(bicep_files()) >= 2


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP_DIR)))
def test_bicep_file_parses(path: Path) -> None:
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares no resource and no module"


def test_every_module_is_used_and_exists() -> None:
    used = {
        (BICEP_DIR / module["detail"]["path"]).resolve()
        for module in parse(MAIN).get("modules", {}).values()
        if module["type"] == "local"
    }
    on_disk = {path.resolve() for path in MODULES.glob("*.bicep")}
    assert used - on_disk == set(), "main.bicep references modules that do not exist"
    assert on_disk - used == set(), "modules/ holds files main.bicep never uses"
    external = [name for name, module in parse(MAIN).get("modules", {}).items() if module["type"] != "local"]
    assert external == [], f"registry modules cannot be resolved offline: {external}"
