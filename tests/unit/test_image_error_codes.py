"""The per-image error codes: one public enum covers every code a result can carry, each documented."""

from __future__ import annotations

from shared.fetch import FetchErrorCode
from shared.image_errors import MEANINGS, ImageErrorCode, fetch_error_code, imaging_error_code
from shared.imaging.errors import ErrorCode
from shared.openapi import openapi_document


def test_every_fetch_and_imaging_code_has_its_public_code() -> None:
    assert {fetch_error_code(c).value for c in FetchErrorCode} == {f"fetch_{c.value}" for c in FetchErrorCode}
    assert {imaging_error_code(c).value for c in ErrorCode} == {c.value for c in ErrorCode}
    # The chunk worker's own codes (the reference, the blob) are there too.
    assert {"invalid_reference", "not_found", "too_large"} <= {c.value for c in ImageErrorCode}


def test_every_code_has_a_meaning() -> None:
    assert set(MEANINGS) == set(ImageErrorCode)
    assert all(meaning.strip() for meaning in MEANINGS.values())


def test_the_openapi_document_lists_every_code_with_its_meaning() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["ImageErrorItem"]["properties"]["code"]["$ref"] == "#/components/schemas/ImageErrorCode"
    enum = schemas["ImageErrorCode"]
    assert enum["enum"] == [c.value for c in ImageErrorCode]
    for code, meaning in MEANINGS.items():
        assert f"`{code.value}`: {meaning}" in enum["description"]
