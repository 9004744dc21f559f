"""The read API on the real PostgreSQL, OpenSearch and Redis, in an isolated schema and index of its own.

The read tables are created with the projections' own DDL (projections/read_models/), the index with the
projections' mappings (projections.read_models.search), so the queries here are checked against the real contract.
Over 400 lines because every test reads one seeded world (schema, index, vectors) built once for the module.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from commands.auth import TokenService, jwt_secret
from commands.relay import POSITIONS_DDL
from domain.licence import Licence
from infra.adapters.search import DocWrite, SearchPort
from infra.settings import Settings
from projections.checkpoints import CHECKPOINTS_DDL
from projections.read_models.search import INDEX_SETTINGS, MAPPINGS, SearchProjection
from projections.registry import PROJECTIONS, projection_topics
from read_api import embedding as embedding_module
from read_api.app import create_app
from read_api.config import ReadApiConfig
from read_api.consistency import LogWatermark, TopicPart
from read_api.embedding import EmbedderUnavailable, MiniLmEmbedder
from read_api.queries.licence_check import decide
from read_api.search import PRICE_BANDS, reciprocal_rank_fusion
from schemas.base import MAX_MINOR_UNITS
from tests.support import require_services

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
DIM = 384
PARTITIONS = 3
END_OFFSET = 5
AFTER_TIMEOUT_S = 0.6
READ_PROJECTIONS = tuple(cls for cls in PROJECTIONS if cls is not SearchProjection)
TOPICS = projection_topics()


def uid() -> uuid.UUID:
    return uuid.uuid4()


SELLER, SELLER_AI, BUYER, STRANGER, ADMIN = uid(), uid(), uid(), uid(), uid()


@dataclass(frozen=True)
class Listing:
    listing_id: uuid.UUID
    title: str
    description: str
    category: str
    kind: str
    price: int
    currency: str
    status: str = "published"
    condition: float | None = None
    seller: uuid.UUID = SELLER
    age_days: int = 0
    # Synthetic embedding axes (used when the real model cannot load); None: no vector at all.
    axes: Mapping[int, float] | None = None


CAMERA = Listing(uid(), "Vintage camera Leica M3", "A classic rangefinder film camera from 1956",
                 "cameras", "goods", 45_000, "EUR", condition=0.8, age_days=3, axes={0: 1.0, 1: 0.1})
DIGITAL = Listing(uid(), "Digital camera Canon EOS", "Mirrorless camera body, barely used",
                  "cameras", "goods", 30_000, "EUR", condition=0.9, age_days=1, axes={0: 1.0, 2: 0.2})
TRIPOD = Listing(uid(), "Aluminium camera tripod", "Light travel tripod for cameras",
                 "cameras", "goods", 5_000, "EUR", condition=0.5, age_days=5, axes={0: 1.0, 3: 0.5})
TABLE = Listing(uid(), "Oak dining table", "Solid oak table seating six", "furniture", "goods",
                120_000, "EUR", condition=0.7, age_days=8, axes={10: 1.0})
LAMP = Listing(uid(), "Vintage desk lamp", "Brass lamp with green shade", "furniture", "goods",
               5_000, "USD", condition=0.6, age_days=2)
MODEL = Listing(uid(), "Sentiment analysis model", "A fine-tuned transformer for product reviews",
                "ai", "ai_model", 10_000, "USD", seller=SELLER_AI, age_days=4, axes={20: 1.0})
DATASET = Listing(uid(), "Street images dataset", "Ten thousand labelled street photos", "ai",
                  "dataset", 20_000, "USD", seller=SELLER_AI, age_days=6, axes={21: 1.0})
DRAFT = Listing(uid(), "Vintage camera draft", "Not yet published", "cameras", "goods", 1_000, "EUR",
                status="draft", age_days=0, axes={0: 1.0, 4: 0.05})
SOLD = Listing(uid(), "Film camera Nikon FM2", "Sold already", "cameras", "goods", 25_000, "EUR",
               status="sold", condition=0.7, age_days=9, axes={0: 1.0, 5: 0.05})
BOOKS = [
    Listing(uid(), f"Paperback novel volume {i}", "A used paperback", "books", "goods", 100 * (i + 1), "GBP",
            condition=0.5, age_days=10 + i)
    for i in range(25)
]
LISTINGS = [CAMERA, DIGITAL, TRIPOD, TABLE, LAMP, MODEL, DATASET, DRAFT, SOLD, *BOOKS]
PUBLISHED = [listing for listing in LISTINGS if listing.status == "published"]

ORDER_ID, LICENCE_ID = uid(), uid()
LICENCES: dict[str, dict[str, Any]] = {
    "ok": {"kind": "perpetual", "status": "active", "expires_at": None, "quota": None, "used": 0},
    "revoked": {"kind": "perpetual", "status": "revoked", "expires_at": None, "quota": None, "used": 0},
    "past_expiry": {"kind": "time_limited", "status": "active", "expires_at": NOW - timedelta(hours=1),
                    "quota": None, "used": 0},
    "expired": {"kind": "time_limited", "status": "expired", "expires_at": NOW - timedelta(days=2),
                "quota": None, "used": 0},
    "exhausted": {"kind": "usage_metered", "status": "active", "expires_at": None, "quota": 10, "used": 10},
    "metered": {"kind": "usage_metered", "status": "active", "expires_at": None, "quota": 10, "used": 3},
    "future_expiry": {"kind": "time_limited", "status": "active", "expires_at": NOW + timedelta(days=1),
                      "quota": None, "used": 0},
}
LICENCE_IDS = {name: uid() for name in LICENCES}


class FixedEndOffsets:
    """Every partition of every projection topic ends at END_OFFSET: the checkpoints decide the rest."""

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPart, int]:
        return {(topic, p): END_OFFSET for topic in topics for p in range(PARTITIONS)}


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    return MiniLmEmbedder()


@pytest.fixture(scope="module")
def semantic_reason(embedder: MiniLmEmbedder) -> str | None:
    """None when the real embedding model loads here; else why not (semantic search must then answer 503)."""
    try:
        embedder.embed("probe")
    except EmbedderUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def schema(settings: Settings) -> Iterator[str]:
    require_services(settings, "postgres", "opensearch", "redis")
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"SET search_path TO {name}, public")
        conn.execute(CHECKPOINTS_DDL)
        conn.execute(POSITIONS_DDL)
        for projection in READ_PROJECTIONS:
            for table, ddl in projection.tables.items():
                conn.execute(ddl.format(t=table))
    yield name
    with psycopg.connect(settings.pg_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(scope="module")
def db(settings: Settings, schema: str) -> Iterator[psycopg.Connection[Any]]:
    from pgvector.psycopg import register_vector

    with psycopg.connect(settings.pg_conninfo, autocommit=True, options=f"-c search_path={schema},public") as conn:
        register_vector(conn)
        yield conn


@pytest.fixture(scope="module")
def alias(settings: Settings) -> Iterator[str]:
    port = SearchPort.from_settings(settings)
    name = f"rtest-{uuid.uuid4().hex[:10]}"
    port.create_index(f"{name}-v1", MAPPINGS, INDEX_SETTINGS)
    port.swap_alias(name, f"{name}-v1")
    port.bulk(f"{name}-v1", [DocWrite(str(item.listing_id), 1, document(item)) for item in LISTINGS], refresh=True)
    yield name
    port.delete_index(f"{name}-v1")


@pytest.fixture(scope="module")
def seeded(db: psycopg.Connection[Any], embedder: MiniLmEmbedder, semantic_reason: str | None) -> None:
    """The rows every test reads; vectors from the real model when it loads, synthetic ones otherwise."""
    for item in LISTINGS:
        insert(db, "rm_listings", listing_row(item))
        vector = embedding(item, embedder if semantic_reason is None else None)
        if vector is not None:
            insert(db, "rm_listing_vectors", {"listing_id": item.listing_id, "embedding": vector,
                                              "model_id": "all-MiniLM-L6-v2", "model_version": "1",
                                              "updated_at": NOW, "version": 1, "position": 1})
    insert(db, "rm_trust", {"user_id": SELLER, "trust_id": uid(), "score": 80, "formula_version": 2,
                            "signals": 7, "updated_at": NOW, "version": 3, "position": 10})
    insert(db, "rm_orders", {
        "order_id": ORDER_ID, "buyer_id": BUYER, "seller_id": SELLER, "listing_id": SOLD.listing_id,
        "price_amount": 25_000, "currency": "EUR", "fee_amount": 1_250, "royalty_amount": 0,
        "seller_amount": 23_750, "status": "delivered", "escrow": "held", "created_at": NOW, "updated_at": NOW,
        "version": 3, "position": 20,
    })
    for currency, available in (("EUR", 10_000), ("USD", 500)):
        insert(db, "rm_wallets", {"wallet_id": uid(), "owner_id": BUYER, "currency": currency,
                                  "available": available, "held": 25_000 if currency == "EUR" else 0,
                                  "updated_at": NOW, "version": 2, "position": 21})
    insert(db, "rm_seller_dashboard", {
        "seller_id": SELLER, "currency": "EUR", "listings_total": 6, "listings_published": 4,
        "orders_total": 2, "orders_completed": 1, "orders_refunded": 0, "revenue_amount": 23_750,
        "fees_amount": 1_250, "updated_at": NOW,
    })
    for name, terms in LICENCES.items():
        insert(db, "rm_licences", {"licence_id": LICENCE_IDS[name], "listing_id": MODEL.listing_id,
                                   "licensee_id": BUYER, "issued_at": NOW - timedelta(days=3), "updated_at": NOW,
                                   "version": 1, "position": 30, **terms})


@pytest.fixture(scope="module")
def client(settings: Settings, schema: str, alias: str, embedder: MiniLmEmbedder, seeded: None) -> Iterator[TestClient]:
    config = ReadApiConfig(pg_schema=schema, search_alias=alias, after_timeout_s=AFTER_TIMEOUT_S,
                           rate_limit="10000/second", rate_limit_prefix=f"rtest-{schema}")
    app = create_app(settings, projection_topics=TOPICS, config=config, embedder=embedder,
                     end_offsets=FixedEndOffsets())
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokens(settings: Settings) -> TokenService:
    """Tokens exactly as the command API's POST /v1/auth/token signs them."""
    return TokenService(jwt_secret(settings), settings.jwt_ttl_s)


def bearer(tokens: TokenService, user: uuid.UUID, role: str = "buyer", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(user, role, **kw)}"}


# -- helpers -------------------------------------------------------------------------------------------------


def document(item: Listing) -> dict[str, Any]:
    return {"title": item.title, "description": item.description, "category": item.category, "kind": item.kind,
            "status": item.status, "currency": item.currency, "price_amount": item.price,
            "condition_score": item.condition, "seller_id": str(item.seller),
            "created_at": created(item).isoformat(), "boosted_until": None}


def created(item: Listing) -> datetime:
    return NOW - timedelta(days=item.age_days)


def listing_row(item: Listing) -> dict[str, Any]:
    return {"listing_id": item.listing_id, "seller_id": item.seller, "kind": item.kind, "title": item.title,
            "description": item.description, "category": item.category, "price_amount": item.price,
            "currency": item.currency, "status": item.status, "attributes": Jsonb({"colour": "black"}),
            "royalty_bps": 0, "condition_score": item.condition, "created_at": created(item),
            "updated_at": NOW, "version": 2, "position": 5}


def embedding(item: Listing, embedder: MiniLmEmbedder | None) -> Any:
    if item.axes is None:
        return None
    if embedder is not None:
        return embedder.embed(f"{item.title}. {item.description}")
    vector = [0.0] * DIM
    for axis, weight in item.axes.items():
        vector[axis] = weight
    norm = math.sqrt(sum(value * value for value in vector))
    return np.array([value / norm for value in vector], dtype=np.float32)


def insert(conn: psycopg.Connection[Any], table: str, row: Mapping[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f"%({column})s" for column in row)
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})", dict(row))


def set_progress(conn: psycopg.Connection[Any], projection: str, relay: int,
                 partitions: Mapping[int, tuple[int, int]]) -> None:
    """Relay position and (next_offset, last_notification_id) per partition of the projection's topics."""
    conn.execute(
        "INSERT INTO bazaar_relay_positions (name, notification_id) VALUES ('main', %s)"
        " ON CONFLICT (name) DO UPDATE SET notification_id = EXCLUDED.notification_id", (relay,)
    )
    for topic in TOPICS[projection]:
        for partition, (next_offset, last_id) in partitions.items():
            conn.execute(
                "INSERT INTO projection_checkpoints (projection, topic, partition, next_offset, last_notification_id)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (projection, topic, partition) DO UPDATE SET"
                " next_offset = EXCLUDED.next_offset, last_notification_id = EXCLUDED.last_notification_id",
                (projection, topic, partition, next_offset, last_id),
            )


def search(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/listings/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: Mapping[str, Any]) -> list[str]:
    return [item["listing_id"] for item in body["items"]]


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


# -- keyword search ------------------------------------------------------------------------------------------


def test_typo_tolerant_match_finds_the_vintage_camera(client: TestClient) -> None:
    body = search(client, q="vintge camra")
    assert ids(body)[0] == str(CAMERA.listing_id)
    assert body["mode"] == "keyword"
    assert body["items"][0]["score"] > 0


def test_title_outranks_description(client: TestClient) -> None:
    # "tripod" is in both the tripod's title and description; "cameras" only in its description.
    body = search(client, q="tripod")
    assert ids(body)[0] == str(TRIPOD.listing_id)


def test_default_search_shows_published_listings_only(client: TestClient) -> None:
    body = search(client, size=100)
    assert body["total"] == len(PUBLISHED)
    assert set(ids(body)) == {str(item.listing_id) for item in PUBLISHED}
    assert str(DRAFT.listing_id) not in ids(search(client, q="draft"))


def test_status_sold_shows_sold_listings(client: TestClient) -> None:
    assert ids(search(client, q="camera", status="sold")) == [str(SOLD.listing_id)]


def test_facet_counts_match_the_data(client: TestClient) -> None:
    facets = search(client, size=1)["facets"]
    for field in ("category", "kind", "currency"):
        expected = Counter(getattr(item, field) for item in PUBLISHED)
        assert {bucket["value"]: bucket["count"] for bucket in facets[field]} == dict(expected)
    bands = list(zip(PRICE_BANDS, (*PRICE_BANDS[1:], None), strict=True))
    expected_bands = [sum(1 for item in PUBLISHED if low <= item.price and (high is None or item.price < high))
                      for low, high in bands]
    assert [bucket["count"] for bucket in facets["price"]] == expected_bands
    assert facets["price"][0]["from_amount"] == 0 and facets["price"][-1]["to_amount"] is None


def test_facets_follow_the_filters(client: TestClient) -> None:
    facets = search(client, category="cameras")["facets"]
    assert facets["category"] == [{"value": "cameras", "count": 3}]
    assert facets["currency"] == [{"value": "EUR", "count": 3}]


def test_price_range_is_exact_with_inclusive_bounds(client: TestClient) -> None:
    body = search(client, price_min=5_000, price_max=30_000, size=100)
    expected = {str(item.listing_id) for item in PUBLISHED if 5_000 <= item.price <= 30_000}
    assert set(ids(body)) == expected
    assert {str(TRIPOD.listing_id), str(LAMP.listing_id), str(DIGITAL.listing_id)} <= expected
    assert body["total"] == len(expected)


def test_kind_category_and_condition_filters(client: TestClient) -> None:
    assert ids(search(client, kind="dataset")) == [str(DATASET.listing_id)]
    cameras = search(client, category="cameras", condition_min=0.8, sort="price_asc")
    assert ids(cameras) == [str(DIGITAL.listing_id), str(CAMERA.listing_id)]


def test_pagination_walks_every_hit_once(client: TestClient) -> None:
    pages = [search(client, category="books", sort="price_asc", size=10, page=page) for page in (1, 2, 3)]
    walked = [listing for page in pages for listing in ids(page)]
    assert walked == [str(item.listing_id) for item in sorted(BOOKS, key=lambda item: item.price)]
    assert [len(page["items"]) for page in pages] == [10, 10, 5]
    assert all(page["total"] == len(BOOKS) for page in pages)
    assert search(client, category="books", page=4, size=10)["items"] == []


def test_sort_orders(client: TestClient) -> None:
    prices = [item["price_amount"] for item in search(client, sort="price_desc", size=100)["items"]]
    assert prices == sorted(prices, reverse=True)
    newest = search(client, sort="newest", size=3)
    by_age = sorted(PUBLISHED, key=lambda item: item.age_days)[:3]
    assert ids(newest) == [str(item.listing_id) for item in by_age]


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"price_min": 500, "price_max": 100}, "query"),
        ({"size": 101}, "size"),
        ({"size": 0}, "size"),
        ({"page": 0}, "page"),
        ({"mode": "fuzzy"}, "mode"),
        ({"sort": "cheapest"}, "sort"),
        ({"price_min": -1}, "price_min"),
        ({"page": 200, "size": 100}, "query"),
        ({"mode": "semantic"}, "query"),
        ({"mode": "hybrid", "q": "camera", "sort": "newest"}, "query"),
        ({"after": -5}, "after"),
        # Past what the index's long and float fields hold: refused here, never sent (it answered 503).
        ({"condition_min": "1e39"}, "condition_min"),
        ({"price_max": 9223372036854775808}, "price_max"),
        ({"price_min": 99999999999999999999}, "price_min"),
        ({"price_max": 10**15 + 1}, "price_max"),
        ({"condition_min": 1.01}, "condition_min"),
        ({"condition_min": "nan"}, "condition_min"),
        ({"condition_min": "inf"}, "condition_min"),
    ],
)
def test_bad_search_parameters_get_422_with_reasons(client: TestClient, params: dict[str, Any], location: str) -> None:
    response = client.get("/v1/listings/search", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "request.invalid"
    assert any(location in detail["loc"] and detail["msg"] for detail in error["details"]), error


# -- semantic and hybrid search ------------------------------------------------------------------------------


def test_semantic_search(client: TestClient, semantic_reason: str | None) -> None:
    response = client.get("/v1/listings/search", params={"q": "old film camera", "mode": "semantic", "size": 3})
    if semantic_reason is not None:
        assert response.status_code == 503
        assert error_code(response) == "semantic.unavailable"
        assert response.json()["error"]["details"]["reason"] == semantic_reason
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "semantic" and body["facets"] is None
    assert ids(body)[0] in {str(CAMERA.listing_id), str(DIGITAL.listing_id)}
    assert str(DRAFT.listing_id) not in ids(body) and str(SOLD.listing_id) not in ids(body)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    vectors = sum(1 for item in PUBLISHED if item.axes is not None)
    assert body["total"] == vectors
    assert body["coverage"] == {"published": len(PUBLISHED), "enriched": vectors,
                                "not_enriched": len(PUBLISHED) - vectors, "ratio": vectors / len(PUBLISHED)}


def test_semantic_search_applies_filters(client: TestClient, semantic_reason: str | None) -> None:
    response = client.get("/v1/listings/search", params={"q": "camera", "mode": "semantic", "kind": "dataset"})
    if semantic_reason is not None:
        assert response.status_code == 503
        return
    assert ids(response.json()) == [str(DATASET.listing_id)]


def test_hybrid_search_fuses_both_rankings(client: TestClient, semantic_reason: str | None) -> None:
    response = client.get("/v1/listings/search", params={"q": "vintage camera", "mode": "hybrid", "size": 5})
    if semantic_reason is not None:
        assert response.status_code == 503
        assert error_code(response) == "semantic.unavailable"
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "hybrid"
    assert ids(body)[0] == str(CAMERA.listing_id)
    assert body["facets"]["category"]
    # A listing first in both rankings scores 2/(60+1).
    assert body["items"][0]["score"] == pytest.approx(2 / 61)
    assert body["coverage"]["published"] == len(PUBLISHED) and body["coverage"]["enriched"] > 0


def test_semantic_answers_503_when_no_published_listing_is_enriched(
    client: TestClient, db: psycopg.Connection[Any], semantic_reason: str | None
) -> None:
    """Vectors gone (none enriched yet): semantic and hybrid refuse with the coverage, never an empty 200."""
    saved = db.execute("SELECT * FROM rm_listing_vectors").fetchall()
    columns = [column.name for column in db.execute("SELECT * FROM rm_listing_vectors LIMIT 0").description or []]
    db.execute("DELETE FROM rm_listing_vectors")
    try:
        for mode in ("semantic", "hybrid"):
            response = client.get("/v1/listings/search", params={"q": "camera", "mode": mode})
            assert response.status_code == 503 and error_code(response) == "semantic.unavailable"
            details = response.json()["error"]["details"]
            assert details["coverage"]["enriched"] == 0 and details["coverage"]["published"] == len(PUBLISHED)
            assert "enriched" in details["reason"]
        assert client.get("/v1/listings/search", params={"q": "camera"}).status_code == 200
    finally:
        for row in saved:
            insert(db, "rm_listing_vectors", dict(zip(columns, row, strict=True)))


def test_semantic_answers_503_when_the_model_cannot_load(settings: Settings, schema: str, alias: str,
                                                       seeded: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process without the model's packages answers: a clear 503, never a made-up vector."""
    monkeypatch.setitem(embedding_module.REQUIRED_MODULES, "bazaar_absent_module", "bazaar-absent-package")
    config = ReadApiConfig(pg_schema=schema, search_alias=alias, rate_limit=None)
    app = create_app(settings, projection_topics=TOPICS, config=config, embedder=MiniLmEmbedder(),
                     end_offsets=FixedEndOffsets())
    with TestClient(app) as bare:
        for mode in ("semantic", "hybrid"):
            response = bare.get("/v1/listings/search", params={"q": "camera", "mode": mode})
            assert response.status_code == 503 and error_code(response) == "semantic.unavailable"
            assert "bazaar-absent-package" in response.json()["error"]["details"]["reason"]
        assert bare.get("/v1/listings/search", params={"q": "camera"}).status_code == 200


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


# -- listing detail and similar ------------------------------------------------------------------------------


def test_listing_detail(client: TestClient) -> None:
    response = client.get(f"/v1/listings/{CAMERA.listing_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == CAMERA.title and body["price_amount"] == CAMERA.price
    assert body["seller_trust_score"] == 80
    assert body["attributes"] == {"colour": "black"}
    assert client.get(f"/v1/listings/{MODEL.listing_id}").json()["seller_trust_score"] is None


def test_unknown_listing_is_404_and_bad_id_422(client: TestClient) -> None:
    response = client.get(f"/v1/listings/{uid()}")
    assert response.status_code == 404 and error_code(response) == "read.not_found"
    response = client.get("/v1/listings/not-a-uuid")
    assert response.status_code == 422 and error_code(response) == "request.invalid"


def test_draft_listing_only_for_its_seller_and_admins(client: TestClient, tokens: TokenService) -> None:
    url = f"/v1/listings/{DRAFT.listing_id}"
    assert client.get(url).status_code == 404
    assert client.get(url, headers=bearer(tokens, STRANGER)).status_code == 404
    assert client.get(url, headers=bearer(tokens, SELLER, "seller")).status_code == 200
    assert client.get(url, headers=bearer(tokens, ADMIN, "admin")).status_code == 200
    response = client.get(url, headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401 and error_code(response) == "auth.token_invalid"


def test_similar_listings(client: TestClient, semantic_reason: str | None) -> None:
    response = client.get(f"/v1/listings/{CAMERA.listing_id}/similar", params={"limit": 3})
    assert response.status_code == 200
    found = ids(response.json())
    assert found[0] in {str(DIGITAL.listing_id), str(TRIPOD.listing_id)}
    assert str(CAMERA.listing_id) not in found
    assert not {str(DRAFT.listing_id), str(SOLD.listing_id), str(LAMP.listing_id)} & set(found)
    if semantic_reason is not None:  # synthetic vectors: the order is known exactly
        assert found == [str(DIGITAL.listing_id), str(TRIPOD.listing_id), str(TABLE.listing_id)]


def test_similar_without_vector_is_empty_and_unknown_404(client: TestClient) -> None:
    response = client.get(f"/v1/listings/{LAMP.listing_id}/similar")
    assert response.status_code == 200 and response.json()["items"] == []
    assert client.get(f"/v1/listings/{uid()}/similar").status_code == 404
    assert client.get(f"/v1/listings/{CAMERA.listing_id}/similar", params={"limit": 51}).status_code == 422


# -- private reads: JWT rules --------------------------------------------------------------------------------


def test_order_for_buyer_seller_and_admin_only(client: TestClient, tokens: TokenService) -> None:
    url = f"/v1/orders/{ORDER_ID}"
    for user, role in ((BUYER, "buyer"), (SELLER, "seller"), (ADMIN, "admin")):
        response = client.get(url, headers=bearer(tokens, user, role))
        assert response.status_code == 200, (role, response.text)
        assert response.json()["escrow"] == "held"
    response = client.get(url, headers=bearer(tokens, STRANGER))
    assert response.status_code == 403 and error_code(response) == "auth.forbidden"
    response = client.get(f"/v1/orders/{uid()}", headers=bearer(tokens, ADMIN, "admin"))
    assert response.status_code == 404 and error_code(response) == "read.not_found"


def test_missing_and_expired_tokens_are_401(client: TestClient, tokens: TokenService) -> None:
    response = client.get(f"/v1/orders/{ORDER_ID}")
    assert response.status_code == 401 and error_code(response) == "auth.missing_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    expired = bearer(tokens, BUYER, now=time.time() - 2 * 3600 - 10)
    for url in (f"/v1/orders/{ORDER_ID}", f"/v1/wallets/{BUYER}", f"/v1/sellers/{SELLER}/dashboard",
                f"/v1/licences/{LICENCE_IDS['ok']}/check"):
        response = client.get(url, headers=expired)
        assert response.status_code == 401 and error_code(response) == "auth.token_expired", url


def test_wallets_for_owner_and_admin(client: TestClient, tokens: TokenService) -> None:
    response = client.get(f"/v1/wallets/{BUYER}", headers=bearer(tokens, BUYER))
    assert response.status_code == 200
    balances = {row["currency"]: (row["available"], row["held"]) for row in response.json()["balances"]}
    assert balances == {"EUR": (10_000, 25_000), "USD": (500, 0)}
    assert client.get(f"/v1/wallets/{BUYER}", headers=bearer(tokens, ADMIN, "admin")).status_code == 200
    response = client.get(f"/v1/wallets/{BUYER}", headers=bearer(tokens, SELLER, "seller"))
    assert response.status_code == 403 and error_code(response) == "auth.forbidden"
    assert client.get(f"/v1/wallets/{STRANGER}", headers=bearer(tokens, STRANGER)).status_code == 404


def test_dashboard_for_its_seller_and_admin(client: TestClient, tokens: TokenService) -> None:
    response = client.get(f"/v1/sellers/{SELLER}/dashboard", headers=bearer(tokens, SELLER, "seller"))
    assert response.status_code == 200
    [eur] = response.json()["currencies"]
    assert eur["revenue_amount"] == 23_750 and eur["conversion"] == pytest.approx(0.25)
    assert client.get(f"/v1/sellers/{SELLER}/dashboard", headers=bearer(tokens, ADMIN, "admin")).status_code == 200
    assert client.get(f"/v1/sellers/{SELLER}/dashboard", headers=bearer(tokens, BUYER)).status_code == 403
    response = client.get(f"/v1/sellers/{SELLER_AI}/dashboard", headers=bearer(tokens, SELLER_AI, "seller"))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("name", "allowed", "reason", "remaining"),
    [
        ("ok", True, "ok", None),
        ("revoked", False, "revoked", None),
        ("past_expiry", False, "expired", None),
        ("expired", False, "expired", None),
        ("exhausted", False, "quota_exhausted", 0),
        ("metered", True, "ok", 7),
        ("future_expiry", True, "ok", None),
    ],
)
def test_licence_check_reasons(client: TestClient, tokens: TokenService, name: str, allowed: bool, reason: str,
                               remaining: int | None) -> None:
    response = client.get(f"/v1/licences/{LICENCE_IDS[name]}/check", headers=bearer(tokens, BUYER))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["allowed"], body["reason"], body["remaining"]) == (allowed, reason, remaining)


def test_licence_check_access(client: TestClient, tokens: TokenService) -> None:
    url = f"/v1/licences/{LICENCE_IDS['ok']}/check"
    assert client.get(url, headers=bearer(tokens, SELLER_AI, "seller")).status_code == 200  # the listing's seller
    assert client.get(url, headers=bearer(tokens, ADMIN, "admin")).status_code == 200
    response = client.get(url, headers=bearer(tokens, SELLER, "seller"))
    assert response.status_code == 403 and error_code(response) == "auth.forbidden"
    assert client.get(url).status_code == 401
    assert client.get(f"/v1/licences/{uid()}/check", headers=bearer(tokens, ADMIN, "admin")).status_code == 404


def domain_licence(kind: str, status: str, used: int) -> Licence:
    """A licence brought to `status` through its own events: issued a day before NOW, used `used` units."""
    issued = NOW - timedelta(days=1)
    licence = Licence.issue(licence_id=uid(), listing_id=uid(), licensee_id=uid(), kind=kind, now=issued,
                            expires_at=NOW if kind == "time_limited" else None,
                            quota=10 if kind == "usage_metered" else None)
    if used:
        licence.record_usage(units=used, at=issued, now=issued)
    if status == "revoked":
        licence.revoke(reason="terms broken", now=issued)
    elif status == "expired":
        licence.expire(now=NOW)
    return licence


@pytest.mark.parametrize(("kind", "status", "used"), [
    ("perpetual", "active", 0), ("perpetual", "revoked", 4), ("time_limited", "active", 0),
    ("time_limited", "expired", 0), ("time_limited", "revoked", 0), ("usage_metered", "active", 3),
    ("usage_metered", "active", 10), ("usage_metered", "revoked", 10),
])
def test_the_read_side_licence_rule_answers_as_the_domain_s_licence_check(kind: str, status: str, used: int) -> None:
    licence = domain_licence(kind, status, used)
    assert licence.status.value == status
    # Around the expiry instant (NOW) too: expiry counts from expires_at on, on both sides.
    for now in (NOW - timedelta(days=1), NOW - timedelta(microseconds=1), NOW, NOW + timedelta(days=30)):
        read_side = decide(licence.status.value, licence.expires_at, licence.quota, licence.used, now)
        assert read_side == licence.check(now).reason, (kind, status, used, now)


def test_trust_is_public(client: TestClient) -> None:
    response = client.get(f"/v1/users/{SELLER}/trust")
    assert response.status_code == 200
    assert response.json()["score"] == 80 and response.json()["signals"] == 7
    assert client.get(f"/v1/users/{uid()}/trust").status_code == 404


# -- read-your-writes ----------------------------------------------------------------------------------------


def test_after_answers_at_once_when_caught_up(client: TestClient, db: psycopg.Connection[Any]) -> None:
    set_progress(db, "trust", relay=100, partitions={p: (END_OFFSET, 90 + p) for p in range(PARTITIONS)})
    started = time.monotonic()
    response = client.get(f"/v1/users/{SELLER}/trust", params={"after": 100})
    assert response.status_code == 200
    assert time.monotonic() - started < AFTER_TIMEOUT_S / 2


def test_after_the_relay_position_is_408(client: TestClient, db: psycopg.Connection[Any]) -> None:
    set_progress(db, "trust", relay=100, partitions={p: (END_OFFSET, 100) for p in range(PARTITIONS)})
    started = time.monotonic()
    response = client.get(f"/v1/users/{SELLER}/trust", params={"after": 101})
    assert time.monotonic() - started >= AFTER_TIMEOUT_S
    assert response.status_code == 408 and error_code(response) == "read.not_caught_up"
    details = response.json()["error"]["details"]
    assert details == {"projection": "trust", "watermark": 100, "relay_position": 100, "after": 101}


def test_a_lagging_partition_holds_the_read(client: TestClient, db: psycopg.Connection[Any]) -> None:
    # Partition 0 has records left (next_offset < end) and has applied up to 140 only.
    set_progress(db, "trust", relay=200, partitions={0: (3, 140), 1: (END_OFFSET, 120), 2: (END_OFFSET, 10)})
    assert client.get(f"/v1/users/{SELLER}/trust", params={"after": 140}).status_code == 200
    response = client.get(f"/v1/users/{SELLER}/trust", params={"after": 141})
    assert response.status_code == 408 and response.json()["error"]["details"]["watermark"] == 140


def test_authentication_comes_before_the_wait(client: TestClient) -> None:
    started = time.monotonic()
    response = client.get(f"/v1/orders/{ORDER_ID}", params={"after": 10**12})
    assert response.status_code == 401 and time.monotonic() - started < AFTER_TIMEOUT_S


def test_after_waits_then_answers(client: TestClient, db: psycopg.Connection[Any], tokens: TokenService) -> None:
    set_progress(db, "orders", relay=400, partitions={p: (2, 350) for p in range(PARTITIONS)})
    catch_up = {p: (END_OFFSET, 400) for p in range(PARTITIONS)}
    timer = threading.Timer(0.2, set_progress, (db, "orders", 400, catch_up))
    started = time.monotonic()
    timer.start()
    try:
        response = client.get(f"/v1/orders/{ORDER_ID}", params={"after": 400}, headers=bearer(tokens, BUYER))
    finally:
        timer.join()
    waited = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert 0.2 <= waited < AFTER_TIMEOUT_S


def test_after_with_the_default_rule_and_real_kafka(settings: Settings, schema: str, alias: str,
                                                    db: psycopg.Connection[Any], seeded: None) -> None:
    """Kafka's own end offsets: caught up and not caught up."""
    require_services(settings, "kafka")
    set_progress(db, "trust", relay=1_000_000, partitions={p: (0, 1_000_000) for p in range(PARTITIONS)})
    config = ReadApiConfig(pg_schema=schema, search_alias=alias, after_timeout_s=AFTER_TIMEOUT_S, rate_limit=None)
    with TestClient(create_app(settings, projection_topics=TOPICS, config=config)) as real:
        assert real.get(f"/v1/users/{SELLER}/trust", params={"after": 1_000_000}).status_code == 200
        response = real.get(f"/v1/users/{SELLER}/trust", params={"after": 1_000_001})
        assert response.status_code == 408 and error_code(response) == "read.not_caught_up"
        assert response.json()["error"]["details"]["relay_position"] == 1_000_000


class CountingEndOffsets(FixedEndOffsets):
    def __init__(self) -> None:
        self.calls = 0

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPart, int]:
        self.calls += 1
        return super().end_offsets(topics)


def test_end_offsets_are_reused_only_when_read_after_the_relay_passed_the_position(
    db: psycopg.Connection[Any], seeded: None
) -> None:
    source = CountingEndOffsets()
    watermark = LogWatermark(source, TOPICS, ttl_s=0.2)
    set_progress(db, "wallets", relay=500, partitions={p: (END_OFFSET, 0) for p in range(PARTITIONS)})
    assert watermark.caught_up(db, "wallets", 500) and source.calls == 1
    assert watermark.caught_up(db, "wallets", 400) and source.calls == 1  # read after the relay passed 400
    set_progress(db, "wallets", relay=600, partitions={})
    # Offsets read at relay 500 may lack 600's record: not trusted, and not refetched within the ttl.
    assert not watermark.caught_up(db, "wallets", 600) and source.calls == 1
    time.sleep(0.25)
    assert watermark.caught_up(db, "wallets", 600) and source.calls == 2


# -- operations ----------------------------------------------------------------------------------------------


def test_rate_limit_per_client(settings: Settings, schema: str, alias: str, seeded: None) -> None:
    config = ReadApiConfig(pg_schema=schema, search_alias=alias, rate_limit="3/minute",
                           rate_limit_prefix=f"rtest-{uuid.uuid4().hex}")
    with TestClient(create_app(settings, projection_topics=TOPICS, config=config,
                               end_offsets=FixedEndOffsets())) as limited:
        statuses = [limited.get(f"/v1/users/{SELLER}/trust").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = limited.get(f"/v1/users/{SELLER}/trust")
        assert error_code(response) == "rate.limited" and int(response.headers["Retry-After"]) >= 1
        assert limited.get("/health").status_code == 200


def test_rate_limit_settings_set_the_limit_and_its_window(schema: str, alias: str, seeded: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAZAAR_READ_RATE_LIMIT", "2")
    monkeypatch.setenv("BAZAAR_READ_RATE_LIMIT_WINDOW_S", "60")
    configured = Settings()
    config = ReadApiConfig.from_settings(configured, pg_schema=schema, search_alias=alias,
                                         rate_limit_prefix=f"rtest-{uuid.uuid4().hex}")
    with TestClient(create_app(configured, projection_topics=TOPICS, config=config,
                               end_offsets=FixedEndOffsets())) as limited:
        statuses = [limited.get(f"/v1/users/{SELLER}/trust").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        retry_after = int(limited.get(f"/v1/users/{SELLER}/trust").headers["Retry-After"])
        assert 1 < retry_after <= 60  # the 60 s window, not the default 1 s one
    monkeypatch.setenv("BAZAAR_READ_RATE_LIMIT", "0")
    monkeypatch.setenv("BAZAAR_READ_AFTER_TIMEOUT_S", "0.3")
    unthrottled = ReadApiConfig.from_settings(Settings())
    assert unthrottled.rate_limit is None and unthrottled.after_timeout_s == 0.3  # 0 turns throttling off


def test_metrics_health_and_openapi(client: TestClient) -> None:
    client.get(f"/v1/users/{SELLER}/trust")
    metrics = client.get("/metrics").text
    assert 'bazaar_read_requests_total{method="GET",route="/v1/users/{user_id}/trust",status="200"}' in metrics
    assert client.get("/health").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Bazaar read API"
    assert set(READ_MODEL_ROUTES) <= set(spec["paths"])
    for path, (private, statuses) in READ_MODEL_ROUTES.items():
        operation = spec["paths"][path]["get"]
        assert operation["description"], path
        assert "after" in {param["name"] for param in operation["parameters"]}, path
        # Public routes take a token but do not need one: the empty requirement says so.
        assert ({} not in operation["security"]) if private else (operation.get("security", [{}]).count({}) == 1)
        assert set(operation["responses"]) == {"200", *map(str, statuses)}, path
        for status in statuses:
            schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (path, status)
        assert "Retry-After" in operation["responses"]["429"]["headers"], path


def test_openapi_declares_the_bounds_of_search_numbers(client: TestClient) -> None:
    parameters = client.get("/openapi.json").json()["paths"]["/v1/listings/search"]["get"]["parameters"]
    bounds: dict[str, tuple[Any, Any]] = {}
    for param in parameters:
        schema = next(s for s in param["schema"].get("anyOf", [param["schema"]]) if s.get("type") != "null")
        bounds[param["name"]] = (schema.get("minimum"), schema.get("maximum"))
    assert bounds["price_min"] == bounds["price_max"] == (0, MAX_MINOR_UNITS)
    assert bounds["condition_min"] == (0, 1)
    assert bounds["page"] == (1, 10_000) and bounds["size"] == (1, 100)


COMMON = (408, 409, 422, 429, 503)
# Each read-model route: does it need a token, and every error status it can answer.
READ_MODEL_ROUTES: dict[str, tuple[bool, tuple[int, ...]]] = {
    "/v1/listings/search": (False, COMMON),
    "/v1/listings/{listing_id}": (False, (401, 404, *COMMON)),
    "/v1/listings/{listing_id}/similar": (False, (401, 404, *COMMON)),
    "/v1/orders/{order_id}": (True, (401, 403, 404, *COMMON)),
    "/v1/wallets/{user_id}": (True, (401, 403, 404, *COMMON)),
    "/v1/sellers/{seller_id}/dashboard": (True, (401, 403, 404, *COMMON)),
    "/v1/licences/{licence_id}/check": (True, (401, 403, 404, *COMMON)),
    "/v1/users/{user_id}/trust": (False, (404, *COMMON)),
    "/v1/platform/revenue": (True, (401, 403, *COMMON)),
}
