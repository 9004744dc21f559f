"""The one search port: index, alias and query calls over opensearch-py or elasticsearch-py (by Settings)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import structlog

from infra.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch

log = structlog.get_logger(__name__)

# Each flavour is an extra (`./run` installs the one BAZAAR_SEARCH_FLAVOUR names): imported only when used.
SearchClient: TypeAlias = "OpenSearch | Elasticsearch"
WriteResult = Literal["created", "updated", "deleted", "not_found", "stale"]

REQUEST_TIMEOUT_S = 30
BULK_CHUNK = 500
# One shard, no replica: right for the local single node; a remote cluster passes its own index settings.
LOCAL_INDEX_SETTINGS: Mapping[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
CONFLICT = 409
NOT_FOUND = 404


def make_search_client(settings: Settings) -> SearchClient:
    """opensearch-py for OpenSearch (the default); elasticsearch-py, which speaks only to Elasticsearch."""
    auth = (settings.search_username, settings.search_password or "") if settings.search_username else None
    if settings.search_flavour == "elasticsearch":
        from elasticsearch import Elasticsearch

        return Elasticsearch(settings.search_url, basic_auth=auth, request_timeout=REQUEST_TIMEOUT_S)
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[settings.search_url], http_auth=auth, timeout=REQUEST_TIMEOUT_S)


@cache
def _client_errors() -> tuple[type[Exception], ...]:
    """The exception classes of whichever search clients are installed."""
    errors: list[type[Exception]] = []
    try:
        from opensearchpy import OpenSearchException

        errors.append(OpenSearchException)
    except ImportError:
        pass
    try:
        from elasticsearch import ApiError, TransportError

        errors += [ApiError, TransportError]
    except ImportError:
        pass
    return tuple(errors)


class SearchError(RuntimeError):
    """A search call failed; status is the HTTP status when the server answered."""

    def __init__(self, operation: str, status: int | None, detail: str) -> None:
        super().__init__(f"search {operation} failed ({status or 'no answer'}): {detail}")
        self.operation = operation
        self.status = status


@dataclass(frozen=True)
class DocWrite:
    """One externally versioned write: index `document`, or delete when it is None."""

    doc_id: str
    version: int
    document: Mapping[str, Any] | None


@dataclass(frozen=True)
class BulkOutcome:
    """Counts of one bulk call; stale writes lost to an equal or newer version already stored."""

    written: int
    stale: int


class SearchPort:
    """The calls projections and the read API make, identical for both clients (both speak the same REST API).

    Writes use external versioning with the aggregate version, so replays and out-of-order deliveries are
    harmless: a write whose version is not above the stored one is reported `stale` and changes nothing.
    """

    def __init__(self, client: SearchClient, index_settings: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.index_settings = dict(LOCAL_INDEX_SETTINGS if index_settings is None else index_settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchPort:
        """A port over the client the settings choose."""
        return cls(make_search_client(settings))

    def cluster_health(self) -> dict[str, Any]:
        """The cluster health document (status green/yellow/red), for readiness checks."""
        with _translated("cluster_health"):
            return _body(self.client.cluster.health())

    # -- indices and aliases -------------------------------------------------------------------------------

    def create_index(
        self, name: str, mappings: Mapping[str, Any], settings: Mapping[str, Any] | None = None
    ) -> None:
        """Create a concrete (versioned) index; settings are merged over the port's defaults."""
        body = {"mappings": dict(mappings), "settings": {**self.index_settings, **(settings or {})}}
        with _translated("create_index"):
            self.client.indices.create(index=name, body=body)
        log.info("search.index.created", index=name)

    def index_exists(self, name: str) -> bool:
        with _translated("index_exists"):
            return bool(self.client.indices.exists(index=name))

    def delete_index(self, name: str, missing_ok: bool = True) -> None:
        """Delete a concrete index; a missing one is fine unless missing_ok is False."""
        try:
            with _translated("delete_index"):
                self.client.indices.delete(index=name)
        except SearchError as exc:
            if not (missing_ok and exc.status == NOT_FOUND):
                raise

    def refresh(self, index: str) -> None:
        """Make every write so far visible to search (tests and rebuild hand-over only: it is costly)."""
        with _translated("refresh"):
            self.client.indices.refresh(index=index)

    def alias_targets(self, alias: str) -> list[str]:
        """Concrete indices the alias points at now; empty when the alias does not exist."""
        try:
            with _translated("alias_targets"):
                response = _body(self.client.indices.get_alias(name=alias))
        except SearchError as exc:
            if exc.status == NOT_FOUND:
                return []
            raise
        return sorted(response)

    def swap_alias(self, alias: str, index: str, drop_old: bool = False) -> list[str]:
        """Point alias at index alone atomically; returns the indices it left (deleted if drop_old).

        Readers see either the old index or the new one, never both or neither. The previous targets are named
        explicitly, so a concurrent swap makes this request fail instead of leaving two indices behind it.
        """
        previous = [old for old in self.alias_targets(alias) if old != index]
        actions: list[dict[str, Any]] = [{"add": {"index": index, "alias": alias}}]
        for old in previous:
            # remove_index deletes the old index in the same atomic step, alias and all.
            actions.append(
                {"remove_index": {"index": old}} if drop_old else {"remove": {"index": old, "alias": alias}}
            )
        with _translated("swap_alias"):
            self.client.indices.update_aliases(body={"actions": actions})
        log.info("search.alias.swapped", alias=alias, index=index, previous=previous, dropped=drop_old)
        return previous

    # -- documents -----------------------------------------------------------------------------------------

    def index_document(
        self, index: str, doc_id: str, document: Mapping[str, Any], version: int, refresh: bool = False
    ) -> WriteResult:
        """Store the document at `version` unless an equal or newer version is already there."""
        try:
            with _translated("index_document"):
                response = self.client.index(
                    index=index,
                    id=doc_id,
                    body=dict(document),
                    version=version,
                    version_type="external",
                    refresh=_refresh_arg(refresh),
                )
        except SearchError as exc:
            if exc.status == CONFLICT:
                return "stale"
            raise
        result: WriteResult = "created" if _body(response).get("result") == "created" else "updated"
        return result

    def delete_document(self, index: str, doc_id: str, version: int, refresh: bool = False) -> WriteResult:
        """Delete at `version`; the tombstone keeps older replays out for index.gc_deletes (60 s default)."""
        try:
            with _translated("delete_document"):
                self.client.delete(
                    index=index,
                    id=doc_id,
                    version=version,
                    version_type="external",
                    refresh=_refresh_arg(refresh),
                )
        except SearchError as exc:
            if exc.status == CONFLICT:
                return "stale"
            if exc.status == NOT_FOUND:
                return "not_found"
            raise
        return "deleted"

    def bulk(self, index: str, writes: Iterable[DocWrite], refresh: bool = False) -> BulkOutcome:
        """Apply externally versioned writes in chunks; stale ones are counted, any other failure raises."""
        written = stale = 0
        for chunk in _chunks(writes, BULK_CHUNK):
            chunk_written, chunk_stale = self._bulk_chunk(index, chunk)
            written, stale = written + chunk_written, stale + chunk_stale
        if refresh:
            self.refresh(index)
        return BulkOutcome(written=written, stale=stale)

    def _bulk_chunk(self, index: str, chunk: Sequence[DocWrite]) -> tuple[int, int]:
        lines: list[Mapping[str, Any]] = []
        for write in chunk:
            meta = {
                "_index": index,
                "_id": write.doc_id,
                "version": write.version,
                "version_type": "external",
            }
            if write.document is None:
                lines.append({"delete": meta})
            else:
                lines.extend(({"index": meta}, dict(write.document)))
        with _translated("bulk"):
            response = _body(self.client.bulk(body=lines))
        return _count_bulk_items(response)

    # -- queries -------------------------------------------------------------------------------------------

    def search(
        self,
        index: str,
        query: Mapping[str, Any] | None = None,
        *,
        aggs: Mapping[str, Any] | None = None,
        size: int = 10,
        from_: int = 0,
        sort: Sequence[Any] | None = None,
        source: bool | Sequence[str] = True,
        track_total_hits: bool | int = True,
    ) -> dict[str, Any]:
        """Run one search request (index may be an alias) and return the raw response body."""
        body: dict[str, Any] = {
            "query": dict(query) if query is not None else {"match_all": {}},
            "size": size,
            "from": from_,
            "_source": source if isinstance(source, bool) else list(source),
            "track_total_hits": track_total_hits,
        }
        if aggs:
            body["aggs"] = dict(aggs)
        if sort:
            body["sort"] = list(sort)
        with _translated("search"):
            return _body(self.client.search(index=index, body=body))


def _count_bulk_items(response: Mapping[str, Any]) -> tuple[int, int]:
    """(written, stale) of a bulk response; raises on any item failure other than a version conflict."""
    written = stale = 0
    failures: list[str] = []
    for item in response.get("items", []):
        outcome = next(iter(item.values()))
        status = int(outcome.get("status", 0))
        if status == CONFLICT:
            stale += 1
        elif status == NOT_FOUND and outcome.get("result") == "not_found":
            written += 1  # deleting what is not there leaves the index as the write wanted it
        elif status >= 300:
            failures.append(f"{outcome.get('_id')}: {outcome.get('error')}")
        else:
            written += 1
    if failures:
        raise SearchError("bulk", None, f"{len(failures)} item(s) failed, first: {failures[0]}")
    return written, stale


def _chunks(writes: Iterable[DocWrite], size: int) -> Iterator[list[DocWrite]]:
    iterator = iter(writes)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _refresh_arg(refresh: bool) -> str:
    # "wait_for" returns once the write is searchable without forcing a segment per request.
    return "wait_for" if refresh else "false"


def _body(response: Any) -> dict[str, Any]:
    """opensearch-py returns dicts, elasticsearch-py ObjectApiResponse wrappers with the dict in `.body`."""
    body = getattr(response, "body", response)
    return dict(body) if isinstance(body, Mapping) else {}


def _status(exc: Exception) -> int | None:
    """HTTP status of either client's error; both call it `status_code` (opensearch-py: 'N/A' without one)."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn either client's exceptions into SearchError, so callers depend on neither library."""
    try:
        yield
    except _client_errors() as exc:
        raise SearchError(operation, _status(exc), str(exc)) from exc
