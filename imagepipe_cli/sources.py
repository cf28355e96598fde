"""What `imagepipe submit` sends: the files of a folder (or one file) to upload, or a list of image references."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

# A list file: one image URL or blob name a line; blank lines and lines starting with '#' are ignored.
LIST_SUFFIXES = (".txt", ".lst", ".urls")
# The API takes at most this many images inline (its MAX_INLINE_IMAGES default) and files in one upload; a longer
# list goes up as a manifest. If the API's limit is lower it answers 413 too_many_images, and the list goes up as a
# manifest then.
INLINE_LIMIT = 10_000
UPLOAD_LIMIT = 10_000


@dataclass(frozen=True)
class LocalFile:
    name: str  # the name in the upload: the path under the folder, with '/' separators
    path: Path
    size: int

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"


def is_reference_list(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def files_to_upload(path: Path) -> list[LocalFile]:
    """A file, or the files under a folder (hidden files and folders skipped), in name order."""
    if path.is_file():
        return [LocalFile(path.name, path, path.stat().st_size)]
    found = []
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append(LocalFile(relative.as_posix(), file, file.stat().st_size))
    return found


def read_references(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def reference_kind(refs: list[str]) -> str:
    """'urls' or 'blobs' when every reference is of one kind (they can go inline), else 'mixed' (a manifest)."""
    urls = sum(1 for ref in refs if ref.lower().startswith(("http://", "https://")))
    return "urls" if urls == len(refs) else "blobs" if urls == 0 else "mixed"
