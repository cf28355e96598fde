"""The `imagepipe` command against the app on the local stack: in a terminal (pexpect reads the live progress of
`submit --watch` back, and Ctrl-C), and in process (typer's CliRunner) for the other commands and the exit codes."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pexpect
import pytest
from PIL import Image
from typer.testing import CliRunner

from devstack.stack import AZURITE_ACCOUNT, AZURITE_KEY, LocalStack
from imagepipe_cli.api import ApiClient, ApiFailure, ExitCode
from imagepipe_cli.main import app
from tests.core.conftest import Api, ApiTenant
from tests.core.image_server import ImageServer, make_jpeg

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LIGHT = "exif,hashes"


def _cli(api: Api, key: str | None, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, ["--url", api.base_url, *(["--key", key] if key else []), *args], env={"IMAGEPIPE_KEY": "", **(env or {})}
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _terminal(api: Api, key: str, *args: str) -> pexpect.spawn:
    """The command in a pseudo-terminal, as a user at a shell runs it."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    env |= {"IMAGEPIPE_URL": api.base_url, "IMAGEPIPE_KEY": key}
    return pexpect.spawn(
        sys.executable,
        ["-m", "imagepipe_cli", *args],
        env=env,
        cwd=str(ROOT),
        dimensions=(40, 160),
        encoding="utf-8",
        timeout=180,
    )


def _url_list(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("# one URL a line\n" + "\n".join(urls) + "\n\n")
    return path


@pytest.mark.stack
def test_submit_watch_in_a_terminal_shows_live_progress_until_the_job_ends(
    app_host: Api, tenant_enterprise: ApiTenant, image_server: ImageServer, tmp_path: Path
) -> None:
    urls = [image_server.url(f"/slow/150/{i}.jpg") for i in range(40)]
    urls += [image_server.url("/missing/1.jpg"), image_server.url("/corrupt/2.jpg")]
    child = _terminal(
        app_host,
        tenant_enterprise.key,
        "submit",
        str(_url_list(tmp_path, urls)),
        "--watch",
        "--analyses",
        LIGHT,
        "--interval",
        "0.3",
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = ANSI.sub("", child.before or "").replace("\r", "\n")

    job_id = re.search(r"job (j\w+) accepted: 42 images, lane standard", screen)
    assert job_id, screen
    seen = [int(n) for n in re.findall(r"(\d+)/42\b", screen)]
    assert len(set(seen)) >= 3 and seen == sorted(seen) and seen[-1] == 42, screen  # live, rising, complete
    assert re.search(r"\d+ failed +[\d.]+ images/s +ETA", screen), screen
    assert (
        f"job {job_id.group(1)} completed_with_errors: 40 succeeded, 2 failed, 0 skipped "
        "(fetch_http_error: 1, unsupported_format: 1)"
    ) in " ".join(screen.split()), screen
    assert child.exitstatus == ExitCode.JOB_NOT_SUCCEEDED


@pytest.mark.stack
def test_ctrl_c_stops_watching_with_exit_130_and_the_job_goes_on(
    app_host: Api, tenant_free: ApiTenant, image_server: ImageServer, tmp_path: Path
) -> None:
    urls = [image_server.url(f"/slow/200/{i}.jpg") for i in range(60)]
    child = _terminal(
        app_host, tenant_free.key, "submit", str(_url_list(tmp_path, urls)), "--watch", "--analyses", LIGHT
    )
    child.expect(r"job (j\w+) accepted")
    job_id = child.match.group(1)
    child.expect("images/s")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert f"stopped watching; job {job_id} goes on" in ANSI.sub("", child.before or ""), child.before
    assert child.exitstatus == ExitCode.INTERRUPTED

    code, out, _ = _cli(app_host, tenant_free.key, "status", job_id, "--json")
    assert code == 0 and json.loads(out)["state"] in ("accepted", "running")
    code, out, _ = _cli(app_host, tenant_free.key, "cancel", job_id)
    assert code == 0 and f"job {job_id}: cancel requested" in out
    status = app_host.wait_for_state(tenant_free.key, job_id, timeout=120)
    assert status["state"] == "cancelled"


@pytest.mark.stack
def test_submit_status_and_results_without_a_terminal(
    app_host: Api, tenant_new: ApiTenant, image_server: ImageServer, tmp_path: Path
) -> None:
    urls = [image_server.url(f"/img/{i}.jpg") for i in range(3)]
    code, out, err = _cli(
        app_host,
        tenant_new.key,
        "submit",
        str(_url_list(tmp_path, urls)),
        "--watch",
        "--interval",
        "0.3",
        "--analyses",
        LIGHT,
    )
    assert code == ExitCode.OK, (out, err)
    job_id = re.search(r"job (j\w+) accepted: 3 images, lane high", out)
    assert job_id, out
    lines = out.splitlines()
    assert any(re.fullmatch(rf"{job_id.group(1)} \w+: \d/3 done, 0 failed, .* images/s, ETA .*", li) for li in lines)
    assert lines[-1] == f"job {job_id.group(1)} succeeded: 3 succeeded, 0 failed, 0 skipped", out

    code, out, _ = _cli(app_host, tenant_new.key, "status", job_id.group(1))
    assert code == 0 and "state     succeeded" in out and "3/3 done" in out, out
    code, out, _ = _cli(app_host, tenant_new.key, "status", job_id.group(1), "--json")
    assert code == 0 and json.loads(out)["counts"] == {"succeeded": 3, "failed": 0, "skipped": 0}
    code, out, _ = _cli(app_host, tenant_new.key, "results", job_id.group(1))
    assert code == 0 and all(f"/{i}.jpg" in out for i in range(3)) and out.count(" yes ") == 3, out
    code, out, _ = _cli(app_host, tenant_new.key, "replay", job_id.group(1))
    assert code == 0 and out.strip() == f"job {job_id.group(1)}: 0 chunks replayed, 0 remaining", out


@pytest.mark.stack
def test_every_failure_has_a_message_and_its_exit_code(
    app_host: Api, tenant_new: ApiTenant, image_server: ImageServer, tmp_path: Path
) -> None:
    code, _, err = _cli(app_host, None, "status", "jnothing")
    assert code == ExitCode.USAGE and "no API key: set IMAGEPIPE_KEY or pass --key" in err
    code, _, err = _cli(app_host, "ipk_tnobody.secret", "status", "jnothing")
    assert code == ExitCode.API_ERROR and err.startswith("error: unauthorized: ") and "(HTTP 401)" in err, err
    code, _, err = _cli(app_host, tenant_new.key, "status", "jnothing")
    assert code == ExitCode.API_ERROR and err.startswith("error: job_not_found: ") and "(HTTP 404)" in err, err
    bad = _url_list(tmp_path, ["https://example.com/" + "a" * 2100])
    code, _, err = _cli(app_host, tenant_new.key, "submit", str(bad))
    assert code == ExitCode.API_ERROR and err.startswith("error: invalid_request: ") and "details: [" in err, err
    code, _, err = _cli(app_host, tenant_new.key, "submit", str(tmp_path / "absent"))
    assert code == ExitCode.USAGE and "does not exist" in " ".join(err.replace("│", " ").split()), err
    code, _, err = _cli(app_host, tenant_new.key, "submit")
    assert code == ExitCode.USAGE and "--manifest NAME" in err, err
    code, _, err = _cli(Api("http://127.0.0.1:9"), tenant_new.key, "status", "jnothing")
    assert code == ExitCode.UNAVAILABLE and err.startswith("error: unreachable: cannot reach http://127.0.0.1:9"), err


@pytest.mark.stack
def test_create_tenant_with_the_app_settings_gives_a_working_key(
    app_host: Api, app_settings: dict[str, str], image_server: ImageServer, tmp_path: Path
) -> None:
    code, out, err = _cli(app_host, None, "create-tenant", "--name", "cli", "--tier", "free", env=app_settings)
    assert code == 0, err
    created = json.loads(out)
    assert created["tier"] == "free" and created["apiKey"].startswith("ipk_")
    urls = _url_list(tmp_path, [image_server.url("/img/1.jpg")])
    code, out, err = _cli(app_host, created["apiKey"], "submit", str(urls))
    assert code == 0 and "accepted: 1 image, lane bulk" in out, (out, err)
    code, _, err = _cli(app_host, None, "create-tenant", "--name", "x", "--tier", "gold", env=app_settings)
    assert code == ExitCode.USAGE, err


@pytest.mark.stack
def test_files_go_to_and_come_from_storage_urls(local_stack: LocalStack, tmp_path: Path) -> None:
    """The storage half of an upload: Put Blob to a write SAS URL (as the API hands out) and download from a read
    one, against Azurite; and what storage's refusal looks like."""
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    service = BlobServiceClient.from_connection_string(local_stack.storage_connection_string)
    container = service.get_container_client("cli-uploads")
    if not container.exists():
        container.create_container()

    def sas_url(name: str, permission: BlobSasPermissions) -> str:
        token = generate_blob_sas(
            AZURITE_ACCOUNT,
            "cli-uploads",
            name,
            account_key=AZURITE_KEY,
            permission=permission,
            expiry=datetime.now(UTC) + timedelta(minutes=5),
        )
        return f"{container.url}/{name}?{token}"

    data = bytes(range(256)) * 9000  # over two of the client's 1 MiB blocks
    source = tmp_path / "photo.jpg"
    source.write_bytes(data)
    with ApiClient("http://127.0.0.1:9", "ipk_never.sent") as client:
        client.put_blob(sas_url("a/photo.jpg", BlobSasPermissions(create=True, write=True)), source, "image/jpeg")
        blob = container.get_blob_client("a/photo.jpg")
        assert blob.download_blob().readall() == data
        assert blob.get_blob_properties().content_settings.content_type == "image/jpeg"
        assert b"".join(client.download(sas_url("a/photo.jpg", BlobSasPermissions(read=True)))) == data
        with pytest.raises(ApiFailure) as refused:  # a read-only URL cannot write
            client.put_blob(sas_url("a/other.jpg", BlobSasPermissions(read=True)), source, "image/jpeg")
    assert refused.value.exit_code == ExitCode.API_ERROR and refused.value.status == 403
    assert refused.value.code == "AuthorizationPermissionMismatch", refused.value.code


def _photo_folder(root: Path, count: int, size: int = 200) -> Path:
    """A folder of JPEGs, some in a sub-folder, with a hidden file that must not be uploaded."""
    (root / "2024").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / ("2024" if i % 2 else "") / f"IMG_{i:04d}.jpg").write_bytes(make_jpeg(i, size))
    (root / ".DS_Store").write_bytes(b"not an image")
    return root


@pytest.mark.stack
def test_a_folder_is_uploaded_submitted_and_its_results_and_thumbnails_downloaded(
    app_host: Api, make_tenant: Any, tmp_path: Path
) -> None:
    tenant = make_tenant("new")
    folder = _photo_folder(tmp_path / "photos", 6)
    code, out, err = _cli(
        app_host,
        tenant.key,
        "submit",
        str(folder),
        "--watch",
        "--interval",
        "0.3",
        "--thumbnail-sizes",
        "64,128",
        "--analyses",
        "exif,thumbnails,hashes",
    )
    assert code == ExitCode.OK, (out, err)
    assert "uploaded 6 files" in err, err
    job_id = re.search(r"job (j\w+) accepted: 6 images, lane high", out)
    assert job_id, out
    assert out.splitlines()[-1] == f"job {job_id.group(1)} succeeded: 6 succeeded, 0 failed, 0 skipped", out

    code, out, err = _cli(app_host, tenant.key, "results", job_id.group(1), "--jsonl")
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["index"] for r in results) == list(range(6)) and all(r["ok"] for r in results), results
    names = {r["ref"].rsplit("/", 1)[-1] for r in results}
    assert names == {f"IMG_{i:04d}.jpg" for i in range(6)}, names  # the hidden file was left out
    # Exported results mean the job document has ended (a status read may show a small job ended a moment earlier).
    code, out, _ = _cli(app_host, tenant.key, "cancel", job_id.group(1))
    assert code == 0 and out.strip() == f"job {job_id.group(1)} had already ended: succeeded", out

    code, out, err = _cli(app_host, tenant.key, "thumbnails", job_id.group(1), "--out", str(tmp_path / "t"))
    made = [(r["index"], t["size"], t["format"]) for r in results for t in r["thumbnails"]]
    assert {size for _, size, _ in made} == {64, 128}
    assert code == 0 and f"{len(made)} thumbnails written" in out, (out, err)
    written = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert written == sorted(f"{index}_{size}.{fmt}" for index, size, fmt in made)
    assert all(max(Image.open(tmp_path / "t" / name).size) <= 128 for name in written)
    code, out, _ = _cli(
        app_host, tenant.key, "thumbnails", job_id.group(1), "--out", str(tmp_path / "s"), "--size", "64"
    )
    assert code == 0 and len(list((tmp_path / "s").iterdir())) == len([m for m in made if m[1] == 64])

    code, out, _ = _cli(app_host, tenant.key, "jobs", "--json")
    assert code == 0 and [json.loads(line)["job_id"] for line in out.splitlines()] == [job_id.group(1)]
    code, out, _ = _cli(app_host, tenant.key, "jobs", "--state", "running")
    assert code == 0 and job_id.group(1) not in out
    code, out, _ = _cli(app_host, tenant.key, "jobs")
    assert code == 0 and job_id.group(1) in out and "6/6" in out, out

    code, out, err = _cli(app_host, tenant.key, "submit", str(folder / "IMG_0000.jpg"), "--json")  # one file
    assert code == 0 and "uploaded 1 file (" in err and json.loads(out)["total_images"] == 1, (out, err)


@pytest.mark.stack
def test_a_list_over_the_inline_limit_goes_up_as_a_manifest(
    app_host: Api, make_tenant: Any, image_server: ImageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imagepipe_cli.main.INLINE_LIMIT", 3)
    tenant = make_tenant("new")
    urls = _url_list(tmp_path, [image_server.url(f"/img/{i}.jpg") for i in range(4)])
    code, out, err = _cli(
        app_host, tenant.key, "submit", str(urls), "--watch", "--interval", "0.3", "--analyses", LIGHT
    )
    assert code == ExitCode.OK, (out, err)
    stored = re.search(r"4 references sent as manifest (\S+)", err)
    assert stored, err
    assert "accepted: manifest job" in out and "succeeded: 4 succeeded" in out, out
    code, out, err = _cli(app_host, tenant.key, "submit", "--manifest", stored.group(1), "--json")  # once more
    assert code == ExitCode.OK and json.loads(out)["job_id"], (out, err)


@pytest.mark.stack
def test_ctrl_c_during_an_upload_submits_nothing(app_host: Api, make_tenant: Any, tmp_path: Path) -> None:
    tenant = make_tenant("free")
    folder = _photo_folder(tmp_path / "many", 150, size=300)
    child = _terminal(app_host, tenant.key, "submit", str(folder), "--concurrency", "1")
    child.expect("uploading")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    screen = ANSI.sub("", child.before or "")
    assert re.search(r"interrupted: upload u\w+ is incomplete and no job was submitted", screen), screen
    assert child.exitstatus == ExitCode.INTERRUPTED
    code, out, _ = _cli(app_host, tenant.key, "jobs", "--json")
    assert code == 0 and out == ""
