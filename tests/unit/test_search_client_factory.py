"""The search flavour setting picks the client; the port sends the same request through either (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from elastic_transport import ObjectApiResponse
from elasticsearch import Elasticsearch
from opensearchpy import OpenSearch

from infra.adapters.search import SearchPort, make_search_client
from infra.settings import Settings


def test_opensearch_is_the_default_flavour() -> None:
    client = make_search_client(Settings())
    assert isinstance(client, OpenSearch)


def test_elasticsearch_flavour_builds_the_elasticsearch_client() -> None:
    settings = Settings(search_flavour="elasticsearch", search_url="http://127.0.0.1:59999")
    client = make_search_client(settings)
    assert isinstance(client, Elasticsearch)


def test_credentials_are_accepted_by_both_clients() -> None:
    for flavour in ("opensearch", "elasticsearch"):
        settings = Settings(search_flavour=flavour, search_username="reader", search_password="secret")
        assert make_search_client(settings) is not None


def _text(value: Any) -> str:
    """opensearch-py hands query parameters to its transport already encoded."""
    return value.decode() if isinstance(value, bytes) else str(value)


Call = tuple[str, str, dict[str, str]]


def _recorder(calls: list[Call], response: Any) -> Any:
    """A stand-in for the transport layer that notes method, path and query parameters."""

    def perform_request(method: str, path: str, params: Any = None, **_: Any) -> Any:
        calls.append((method, path, {key: _text(value) for key, value in (params or {}).items()}))
        return response

    return perform_request


def test_external_versioning_reaches_the_wire_through_either_client(monkeypatch: pytest.MonkeyPatch) -> None:
    opensearch_calls: list[Call] = []
    elasticsearch_calls: list[Call] = []
    opensearch = OpenSearch(hosts=["http://127.0.0.1:59999"])
    elasticsearch = Elasticsearch("http://127.0.0.1:59999")
    # opensearch-py calls its transport; elasticsearch-py its own perform_request, with a response wrapper.
    monkeypatch.setattr(
        opensearch.transport, "perform_request", _recorder(opensearch_calls, {"result": "created"})
    )
    es_response: ObjectApiResponse[Any] = ObjectApiResponse(body={"result": "created"}, meta=None)
    monkeypatch.setattr(elasticsearch, "perform_request", _recorder(elasticsearch_calls, es_response))

    for client in (opensearch, elasticsearch):
        result = SearchPort(client).index_document("listings-v1", "l-1", {"title": "lamp"}, version=7)
        assert result == "created"

    for calls in (opensearch_calls, elasticsearch_calls):
        method, path, params = calls[0]
        assert (method, path) == ("PUT", "/listings-v1/_doc/l-1")
        assert params["version"] == "7"
        assert params["version_type"] == "external"
