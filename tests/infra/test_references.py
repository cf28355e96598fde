"""Docstrings, comments and docs name only files that are in the repository (a cited file that is not here cannot
be read by whoever changes the code next: say the fact inline instead)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("shared", "functions", "devstack", "docs", "bench", "tests", "infra", "imagepipe_cli", "notes")
# A path under one of the repository's top folders (or notes/, which is not in it), ending in a file extension.
CITED_PATH = re.compile(
    rf"(?<![\w/.-])((?:{'|'.join(TOP_FOLDERS)})/[\w/.-]*\w\.(?:py|md|json|js|bicep|txt|toml|yaml|png))\b"
)


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [
        ROOT / name
        for name in names
        if name.endswith((".py", ".md", ".js", ".json", ".bicep", ".toml")) and not name.endswith("package-lock.json")
    ]


def test_every_cited_file_is_in_the_repository() -> None:
    files = _tracked_text_files()
    assert len(files) > 100, "git ls-files found too few files: the scan is broken"
    missing = []
    cited = 0
    for path in files:
        for match in CITED_PATH.finditer(path.read_text(errors="replace")):
            cited += 1
            ref = match.group(1)
            if not (ROOT / ref).exists() and not (path.parent / ref).exists():
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert cited > 50, "found too few cited paths: the pattern is broken"
    assert missing == []
