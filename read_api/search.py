"""Listing search: keyword (the search index), semantic (pgvector) and hybrid (reciprocal rank fusion)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from infra.adapters.search import SearchPort
from read_api.embedding import Embedder, EmbedderUnavailable
from read_api.errors import InvalidRequest, SemanticUnavailable
from read_api.models import (
    CoveragePublic,
    FacetBucketPublic,
    FacetsPublic,
    ListingSummaryPublic,
    PriceBucketPublic,
    SearchResultsPublic,
)
from read_api.queries.enrichment_coverage import enrichment_coverage
from read_api.queries.nearest_listings import ListingFilters, count_nearest, nearest_listings
from read_api.queries.rows import Conn
from schemas.base import MAX_MINOR_UNITS

Mode = Literal["keyword", "semantic", "hybrid"]
SortOrder = Literal["relevance", "price_asc", "price_desc", "newest"]

# The index answers at most this far into a result list (index.max_result_window).
MAX_WINDOW = 10_000
RRF_K = 60
# Price bands of the price facet, in minor units: [0, 10), [10, 50), ... [1000, ∞) in major units.
PRICE_BANDS = (0, 1_000, 5_000, 10_000, 50_000, 100_000)
TEXT_FIELDS = ("title^3", "title.folded^3", "description")
SOURCE_FIELDS = (
    "title", "description", "category", "kind", "status", "price_amount", "currency", "condition_score",
    "seller_id", "created_at",
)
SORTS: Mapping[str, list[Any]] = {
    "relevance": ["_score", {"created_at": {"order": "desc"}}],
    "price_asc": [{"price_amount": {"order": "asc"}}, "_score", {"created_at": {"order": "desc"}}],
    "price_desc": [{"price_amount": {"order": "desc"}}, "_score", {"created_at": {"order": "desc"}}],
    "newest": [{"created_at": {"order": "desc"}}, "_score"],
}
FACET_AGGS: Mapping[str, Any] = {
    "category": {"terms": {"field": "category", "size": 50}},
    "kind": {"terms": {"field": "kind", "size": 10}},
    "currency": {"terms": {"field": "currency", "size": 20}},
    "price": {
        "range": {
            "field": "price_amount",
            "ranges": [
                {"from": low, **({"to": high} if high is not None else {})}
                for low, high in zip(PRICE_BANDS, (*PRICE_BANDS[1:], None), strict=True)
            ],
        }
    },
}


class SearchParams(BaseModel):
    """Query parameters of GET /v1/listings/search."""

    q: str | None = Field(None, max_length=200, description="words to look for (typos tolerated)")
    mode: Mode = Field("keyword", description="keyword index, semantic neighbours, or hybrid (RRF of both)")
    category: str | None = Field(None, max_length=100)
    kind: str | None = Field(None, max_length=50, description="ai_model, dataset or goods")
    status: Literal["published", "sold"] = Field("published", description="listings in this status only")
    # Prices never pass the write side's bound, and the index refuses numbers past its `long` fields.
    price_min: int | None = Field(None, ge=0, le=MAX_MINOR_UNITS, description="minor units, inclusive")
    price_max: int | None = Field(None, ge=0, le=MAX_MINOR_UNITS, description="minor units, inclusive")
    condition_min: float | None = Field(None, ge=0, le=1, allow_inf_nan=False,
                                        description="inclusive; condition scores lie within 0..1")
    sort: SortOrder = Field("relevance", description="keyword mode only; semantic and hybrid rank by relevance")
    page: int = Field(1, ge=1, le=MAX_WINDOW, description=f"from 1; page * size must not exceed {MAX_WINDOW}")
    size: int = Field(20, ge=1, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must not exceed price_max")
        if self.page * self.size > MAX_WINDOW:
            raise ValueError(f"page * size must not exceed {MAX_WINDOW}")
        if self.mode != "keyword" and not (self.q and self.q.strip()):
            raise ValueError(f"mode={self.mode} needs a query q")
        if self.mode != "keyword" and self.sort != "relevance":
            raise ValueError(f"mode={self.mode} ranks by relevance only; sort must be relevance")
        return self

    @property
    def filters(self) -> ListingFilters:
        return ListingFilters(self.status, self.category, self.kind, self.price_min, self.price_max,
                              self.condition_min)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def projections_for(mode: Mode) -> tuple[str, ...]:
    """The projections a search in this mode reads (each one waited on for `?after=`)."""
    semantic = ("vectors", "listings")
    return {"keyword": ("search",), "semantic": semantic, "hybrid": ("search", *semantic)}[mode]


def keyword_query(params: SearchParams) -> dict[str, Any]:
    """A bool query: fuzzy multi_match over title (boosted) and description, filters as filter clauses."""
    text = (params.q or "").strip()
    must: dict[str, Any] = (
        {"multi_match": {"query": text, "fields": list(TEXT_FIELDS), "fuzziness": "AUTO"}}
        if text else {"match_all": {}}
    )
    return {"bool": {"must": [must], "filter": _filter_clauses(params.filters)}}


def _filter_clauses(filters: ListingFilters) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = [{"term": {"status": filters.status}}]
    for field, value in (("category", filters.category), ("kind", filters.kind)):
        if value is not None:
            clauses.append({"term": {field: value}})
    price = {op: value for op, value in (("gte", filters.price_min), ("lte", filters.price_max)) if value is not None}
    if price:
        clauses.append({"range": {"price_amount": price}})
    if filters.condition_min is not None:
        clauses.append({"range": {"condition_score": {"gte": filters.condition_min}}})
    return clauses


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Ids by Σ 1/(k + rank) over the rankings (rank from 1); ties keep first-seen order."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def hit_summary(hit: Mapping[str, Any]) -> ListingSummaryPublic:
    source = hit.get("_source") or {}
    return ListingSummaryPublic.model_validate(
        {**{field: source.get(field) for field in SOURCE_FIELDS}, "title": source.get("title") or "",
         "listing_id": hit["_id"], "score": hit.get("_score")}
    )


def parse_facets(aggregations: Mapping[str, Any]) -> FacetsPublic:
    def terms(name: str) -> list[FacetBucketPublic]:
        buckets = aggregations.get(name, {}).get("buckets", [])
        return [FacetBucketPublic(value=str(b["key"]), count=int(b["doc_count"])) for b in buckets]

    price = [
        PriceBucketPublic(
            from_amount=None if b.get("from") is None else int(b["from"]),
            to_amount=None if b.get("to") is None else int(b["to"]),
            count=int(b["doc_count"]),
        )
        for b in aggregations.get("price", {}).get("buckets", [])
    ]
    return FacetsPublic(category=terms("category"), kind=terms("kind"), currency=terms("currency"), price=price)


@dataclass
class ListingSearch:
    """Runs a search in the mode asked, over the search alias and the pgvector table."""

    port: SearchPort
    alias: str
    embedder: Embedder
    candidates: int = 1000

    def run(self, conn: Conn, params: SearchParams) -> SearchResultsPublic:
        if params.mode == "semantic":
            return self.semantic(conn, params)
        if params.mode == "hybrid":
            return self.hybrid(conn, params)
        return self.keyword(params)

    def keyword(self, params: SearchParams) -> SearchResultsPublic:
        """One page from the index, with facets over every hit."""
        hits, total, facets = self._keyword_hits(params, params.size, params.offset, params.sort)
        return SearchResultsPublic(mode="keyword", total=total, page=params.page, size=params.size,
                                   items=hits, facets=facets, coverage=None)

    def semantic(self, conn: Conn, params: SearchParams) -> SearchResultsPublic:
        """One page of the nearest published listings to the query's embedding."""
        self._check_window(params)
        vector = self._embed(params.q or "")
        coverage = self._servable_coverage(conn)
        items = nearest_listings(conn, vector, params.size, params.offset, params.filters)
        total = count_nearest(conn, params.filters, self.candidates)
        return SearchResultsPublic(mode="semantic", total=total, page=params.page, size=params.size,
                                   items=items, facets=None, coverage=coverage)

    def hybrid(self, conn: Conn, params: SearchParams) -> SearchResultsPublic:
        """Keyword and semantic rankings fused by RRF (k=60); facets from the keyword side."""
        self._check_window(params)
        vector = self._embed(params.q or "")
        coverage = self._servable_coverage(conn)
        depth = min(self.candidates, max(100, params.page * params.size))
        keyword_hits, _, facets = self._keyword_hits(params, depth, 0, "relevance")
        semantic_hits = nearest_listings(conn, vector, depth, 0, params.filters)
        fused = reciprocal_rank_fusion([
            [str(hit.listing_id) for hit in keyword_hits], [str(hit.listing_id) for hit in semantic_hits]
        ])
        by_id = {str(hit.listing_id): hit for hit in (*semantic_hits, *keyword_hits)}
        page = fused[params.offset:params.offset + params.size]
        items = [by_id[item].model_copy(update={"score": score}) for item, score in page]
        return SearchResultsPublic(mode="hybrid", total=len(fused), page=params.page, size=params.size,
                                   items=items, facets=facets, coverage=coverage)

    def _servable_coverage(self, conn: Conn) -> CoveragePublic:
        """The coverage figure; 503 when no published listing has a vector (an empty 200 would hide it)."""
        coverage = enrichment_coverage(conn)
        if coverage.published and not coverage.enriched:
            reason = f"none of the {coverage.published} published listings is enriched yet"
            raise SemanticUnavailable(reason, {"reason": reason, "coverage": coverage.model_dump()})
        return coverage

    def _keyword_hits(self, params: SearchParams, size: int, offset: int,
                      sort: str) -> tuple[list[ListingSummaryPublic], int, FacetsPublic]:
        response = self.port.search(
            self.alias, keyword_query(params), aggs=FACET_AGGS, size=size, from_=offset,
            sort=SORTS[sort], source=list(SOURCE_FIELDS),
        )
        hits = response.get("hits", {})
        total = int((hits.get("total") or {}).get("value", 0))
        items = [hit_summary(hit) for hit in hits.get("hits", [])]
        return items, total, parse_facets(response.get("aggregations", {}))

    def _embed(self, text: str) -> Sequence[float]:
        try:
            return self.embedder.embed(text)
        except EmbedderUnavailable as exc:
            raise SemanticUnavailable(str(exc), {"reason": str(exc)}) from exc

    def _check_window(self, params: SearchParams) -> None:
        if params.page * params.size > self.candidates:
            raise InvalidRequest(
                f"semantic and hybrid search rank the nearest {self.candidates} listings only",
                {"max_page_times_size": self.candidates},
            )
