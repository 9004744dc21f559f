"""Against the real local OpenSearch node (`./run up`): search, facets, fuzziness, versions, aliases."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.adapters.search import BulkOutcome, DocWrite, SearchError, SearchPort, make_search_client
from infra.settings import Settings

pytestmark = pytest.mark.integration

DOCUMENTS = 100
CATEGORIES = ["cameras", "furniture", "books"]
NOUNS = ["camera", "lamp", "chair", "novel", "tripod"]
CONDITIONS = ["new", "used", "refurbished", "for parts"]
MAPPINGS: dict[str, Any] = {
    "properties": {
        # asciifolding comes from the analysis-common module: "Café" matches "cafe".
        "title": {"type": "text", "analyzer": "folded"},
        "category": {"type": "keyword"},
        "condition": {"type": "keyword"},
        # scaled_float comes from the mapper-extras module.
        "price": {"type": "scaled_float", "scaling_factor": 100},
    }
}
ANALYSIS: dict[str, Any] = {
    "analysis": {
        "analyzer": {
            "folded": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}
        }
    }
}


@pytest.fixture(scope="module")
def port() -> SearchPort:
    """A port on the running node; fails (not skips) when the node is down, since these tests need it."""
    settings = Settings()
    port = SearchPort(make_search_client(settings))
    try:
        health = port.cluster_health()
    except SearchError as exc:
        pytest.fail(f"OpenSearch is not answering on {settings.search_url} ({exc}): start it with `./run up`")
    if health.get("status") not in ("yellow", "green"):
        status = health.get("status")
        pytest.fail(f"OpenSearch on {settings.search_url} is {status}: see .bazaar/logs/opensearch.log")
    return port


@pytest.fixture
def new_index(port: SearchPort) -> Iterator[Callable[[], str]]:
    """Makes uniquely named indices with the test mappings; deletes them all afterwards."""
    created: list[str] = []

    def make() -> str:
        name = f"test-listings-{uuid.uuid4().hex[:12]}"
        port.create_index(name, MAPPINGS, settings=ANALYSIS)
        created.append(name)
        return name

    yield make
    for name in created:
        port.delete_index(name)


def _listing(n: int) -> dict[str, Any]:
    return {
        "title": f"Café {NOUNS[n % len(NOUNS)]} number {n}",
        "category": CATEGORIES[n % len(CATEGORIES)],
        "condition": CONDITIONS[n % len(CONDITIONS)],
        "price": round(5 + n * 1.25, 2),
    }


@pytest.fixture
def catalogue(port: SearchPort, new_index: Callable[[], str]) -> str:
    """An index holding DOCUMENTS listings, written in one bulk call at version 1."""
    index = new_index()
    writes = [DocWrite(doc_id=f"listing-{n}", version=1, document=_listing(n)) for n in range(DOCUMENTS)]
    outcome = port.bulk(index, writes, refresh=True)
    assert (outcome.written, outcome.stale) == (DOCUMENTS, 0)
    return index


def _total(response: dict[str, Any]) -> int:
    return int(response["hits"]["total"]["value"])


def test_match_query_and_terms_aggregation_count_right(port: SearchPort, catalogue: str) -> None:
    everything = port.search(catalogue, size=0, aggs={"by_category": {"terms": {"field": "category"}}})
    assert _total(everything) == DOCUMENTS
    categories = {b["key"]: b["doc_count"] for b in everything["aggregations"]["by_category"]["buckets"]}
    assert categories == Counter(_listing(n)["category"] for n in range(DOCUMENTS))

    cameras = [n for n in range(DOCUMENTS) if NOUNS[n % len(NOUNS)] == "camera"]
    response = port.search(
        catalogue,
        {"match": {"title": "camera"}},
        size=DOCUMENTS,
        aggs={"by_condition": {"terms": {"field": "condition"}}},
    )
    assert {hit["_id"] for hit in response["hits"]["hits"]} == {f"listing-{n}" for n in cameras}
    conditions = {b["key"]: b["doc_count"] for b in response["aggregations"]["by_condition"]["buckets"]}
    assert conditions == Counter(_listing(n)["condition"] for n in cameras)


def test_folding_analyzer_matches_without_accents(port: SearchPort, catalogue: str) -> None:
    assert _total(port.search(catalogue, {"match": {"title": "cafe"}}, size=0)) == DOCUMENTS


def test_fuzzy_match_finds_a_typo(port: SearchPort, catalogue: str) -> None:
    exact = port.search(catalogue, {"match": {"title": "tripod"}}, size=0)
    typo = port.search(catalogue, {"match": {"title": {"query": "tirpod", "fuzziness": "AUTO"}}}, size=0)
    strict = port.search(catalogue, {"match": {"title": "tirpod"}}, size=0)
    assert _total(exact) == DOCUMENTS // len(NOUNS)
    assert _total(typo) == _total(exact)
    assert _total(strict) == 0


def test_painless_script_query_runs(port: SearchPort, catalogue: str) -> None:
    script = {"source": "doc['price'].value >= params.min", "lang": "painless", "params": {"min": 100.0}}
    response = port.search(catalogue, {"script": {"script": script}}, size=0)
    assert _total(response) == sum(1 for n in range(DOCUMENTS) if _listing(n)["price"] >= 100.0)


def test_external_versioning_rejects_older_versions(port: SearchPort, new_index: Callable[[], str]) -> None:
    index = new_index()
    assert port.index_document(index, "listing-1", {"title": "lamp v5"}, version=5) == "created"
    assert port.index_document(index, "listing-1", {"title": "lamp v3"}, version=3) == "stale"
    assert port.index_document(index, "listing-1", {"title": "lamp v5 again"}, version=5) == "stale"
    assert port.index_document(index, "listing-1", {"title": "lamp v6"}, version=6, refresh=True) == "updated"

    replay = [
        DocWrite("listing-1", 4, {"title": "lamp v4"}),
        DocWrite("listing-2", 1, {"title": "chair v1"}),
        DocWrite("listing-2", 1, {"title": "chair v1 duplicate"}),
    ]
    assert port.bulk(index, replay, refresh=True) == BulkOutcome(written=1, stale=2)

    hits = port.search(index, {"ids": {"values": ["listing-1", "listing-2"]}})["hits"]["hits"]
    titles = {hit["_id"]: hit["_source"]["title"] for hit in hits}
    assert titles == {"listing-1": "lamp v6", "listing-2": "chair v1"}

    assert port.delete_document(index, "listing-1", version=6) == "stale"
    assert port.delete_document(index, "listing-1", version=7, refresh=True) == "deleted"
    assert port.index_document(index, "listing-1", {"title": "lamp v6 replayed"}, version=6) == "stale"


def test_alias_swap_is_atomic(port: SearchPort, new_index: Callable[[], str]) -> None:
    alias = f"test-alias-{uuid.uuid4().hex[:12]}"
    old, new = new_index(), new_index()
    port.bulk(old, [DocWrite(f"o{n}", 1, {"title": f"old {n}"}) for n in range(3)], refresh=True)
    port.bulk(new, [DocWrite(f"n{n}", 1, {"title": f"new {n}"}) for n in range(5)], refresh=True)
    assert port.swap_alias(alias, old) == []

    seen: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_through_alias() -> None:
        while not stop.is_set():
            try:
                seen.add(_total(port.search(alias, size=0)))
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)
                return

    reader = threading.Thread(target=read_through_alias)
    reader.start()
    try:
        for _ in range(10):
            assert port.swap_alias(alias, new) == [old]
            assert port.swap_alias(alias, old) == [new]
    finally:
        stop.set()
        reader.join(timeout=30)

    assert not errors, errors
    # A reader never saw both indices (8) or neither (0 or an error).
    assert seen and seen <= {3, 5}
    assert port.alias_targets(alias) == [old]

    assert port.swap_alias(alias, new, drop_old=True) == [old]
    assert port.alias_targets(alias) == [new]
    assert not port.index_exists(old)
    assert _total(port.search(alias, size=0)) == 5
