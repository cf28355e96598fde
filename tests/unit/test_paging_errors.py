"""Paging with a continuation: only the store refusing the token is the client's mistake; an outage stays an outage.

The store's pages are a plain iterator here (the Cosmos SDK's page iterator yields pages or raises its HTTP error);
what is checked is the pure mapping in `_next_page` and in the paged use cases, not Cosmos.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from functions.http import status_of
from shared.adapters.job_store import _next_page
from shared.errors import DomainError
from shared.paging import ContinuationRejected, encode_continuation
from shared.services.jobs import _paged


def _failing(status: int) -> Iterator[list[dict[str, Any]]]:
    raise CosmosHttpResponseError(status_code=status, message=f"status {status}")
    yield []  # a generator: the error comes from the first next(), as the SDK's does


def test_a_refused_continuation_is_the_clients_mistake() -> None:
    with pytest.raises(ContinuationRejected):
        _next_page(_failing(400), "token")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_outage_while_paging_with_a_token_stays_an_outage(status: int) -> None:
    with pytest.raises(CosmosHttpResponseError) as caught:
        _next_page(_failing(status), "token")
    assert caught.value.status_code == status and not isinstance(caught.value, ContinuationRejected)


def test_a_400_without_a_continuation_is_not_blamed_on_one() -> None:
    with pytest.raises(CosmosHttpResponseError):
        _next_page(_failing(400), None)


def test_pages_and_their_end() -> None:
    pages = iter([[{"id": "a"}], [{"id": "b"}]])
    assert _next_page(pages, "t") == [{"id": "a"}]
    assert _next_page(pages, "t") == [{"id": "b"}]
    assert _next_page(pages, "t") is None


def test_the_paged_use_cases_answer_400_only_for_a_refused_token() -> None:
    token = encode_continuation("images:j1", "inner")

    def refused(_: str | None) -> tuple[list[Any], str | None]:
        raise ContinuationRejected("altered")

    with pytest.raises(DomainError) as caught:
        _paged("images:j1", token, refused)
    assert caught.value.code == "invalid_continuation" and status_of(caught.value) == 400

    def outage(_: str | None) -> tuple[list[Any], str | None]:
        raise CosmosHttpResponseError(status_code=503, message="unavailable")

    with pytest.raises(CosmosHttpResponseError):  # not a DomainError: the edge answers 500 internal_error
        _paged("images:j1", token, outage)
