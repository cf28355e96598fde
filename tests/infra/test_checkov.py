"""checkov (offline, its own venv) over infra/: no failed check, and every suppression carries its reason inline."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.infra.bicep_model import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run ./devstack/bootstrap (never skipped)")
    # --skip-download: no network (no Prisma/Bridgecrew policies, no version check).
    command = [str(CHECKOV), "-d", "infra", "--framework", "bicep", "--skip-download", "--output", "json"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    try:
        parsed = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        pytest.fail(f"checkov gave no JSON report (exit {proc.returncode}):\n{tail}")
    reports = parsed if isinstance(parsed, list) else [parsed]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, f"expected one bicep report, got {[r.get('check_type') for r in reports]}"
    result: dict[str, Any] = bicep[0]
    return result


@pytest.mark.slow
def test_checkov_scanned_the_bicep(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, "checkov could not parse some Bicep"
    assert summary["resource_count"] >= 20, f"checkov saw only {summary['resource_count']} resources"
    assert summary["passed"] > 0


@pytest.mark.slow
def test_checkov_has_no_failed_checks(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['check_name']} on {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)


@pytest.mark.slow
def test_every_suppression_is_justified(report: dict[str, Any]) -> None:
    for check in report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
        assert len(reason) >= 30 and reason != "No comment provided", (
            f"{check['check_id']} on {check['resource']} is suppressed without a real reason: {reason!r}"
        )
