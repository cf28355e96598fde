"""What `imagepipe submit` makes of a path: the files of a folder, a list file's references and their kind."""

from __future__ import annotations

from pathlib import Path

from imagepipe_cli.sources import files_to_upload, is_reference_list, read_references, reference_kind
from imagepipe_cli.watch import eta_text, progress_line


def test_a_folder_uploads_its_files_by_relative_name_without_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / "a" / ".git").mkdir(parents=True)
    (tmp_path / "a" / "x.jpg").write_bytes(b"12345")
    (tmp_path / "a" / ".git" / "config").write_text("no")
    (tmp_path / "b.png").write_bytes(b"1")
    (tmp_path / ".hidden.jpg").write_bytes(b"1")
    files = files_to_upload(tmp_path)
    assert [(f.name, f.size, f.content_type) for f in files] == [
        ("a/x.jpg", 5, "image/jpeg"),
        ("b.png", 1, "image/png"),
    ]
    [single] = files_to_upload(tmp_path / "a" / "x.jpg")
    assert single.name == "x.jpg"


def test_a_list_file_holds_references_of_one_kind_or_mixed(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("# comment\nhttps://example.com/a.jpg\n\n  HTTP://example.com/b.jpg  \n")
    assert is_reference_list(listing) and not is_reference_list(tmp_path / "photo.jpg")
    refs = read_references(listing)
    assert refs == ["https://example.com/a.jpg", "HTTP://example.com/b.jpg"]
    assert reference_kind(refs) == "urls"
    assert reference_kind(["2024/a.jpg", "b.jpg"]) == "blobs"
    assert reference_kind(["2024/a.jpg", "https://example.com/a.jpg"]) == "mixed"


def test_progress_reads_the_status_fields() -> None:
    status = {
        "job_id": "j1",
        "state": "running",
        "total_images": 10,
        "counts": {"succeeded": 3, "failed": 1, "skipped": 0},
        "images_per_second": 2.25,
        "eta_seconds": 3725.4,
    }
    assert progress_line(status) == "j1 running: 4/10 done, 1 failed, 2.2 images/s, ETA 1:02:05"
    assert eta_text({**status, "eta_seconds": 65}) == "1:05"
    assert eta_text({**status, "state": "succeeded"}) == "-"
    assert progress_line({**status, "total_images": None, "images_per_second": None}).startswith("j1 running: 4/? done")
