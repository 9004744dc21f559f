"""The search flavour setting picks the client; the port sends the same request through either (no search node)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

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


class _RecordingHandler(BaseHTTPRequestHandler):
    """Answers every request like a cluster would and keeps the Authorization header it was sent."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"cluster_name": "c", "version": {"number": "9.0.0"}, "tagline": "t"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")  # elasticsearch-py's product check
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture()
def recording_server() -> Iterator[str]:
    _RecordingHandler.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("flavour", ["opensearch", "elasticsearch"])
def test_credentials_reach_the_wire_as_basic_auth(flavour: str, recording_server: str) -> None:
    settings = Settings(search_flavour=flavour, search_url=recording_server,
                        search_username="reader", search_password="secret")
    make_search_client(settings).info()
    expected = "Basic " + base64.b64encode(b"reader:secret").decode()
    assert _RecordingHandler.seen == [expected]


def test_no_credentials_send_no_authorization(recording_server: str) -> None:
    make_search_client(Settings(search_url=recording_server)).info()
    assert _RecordingHandler.seen == [None]


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
