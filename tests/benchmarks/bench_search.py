"""Search latency at 100,000 listings: the read API over HTTP vs the same queries sent straight to the index.

Run: `.venv/bin/python tests/benchmarks/bench_search.py [--docs N] [--queries N]` with `./run up` services.
It bulk-indexes synthetic listings into an isolated index (alias `bench-listings-<hex>`), serves the read API
on a free port with that alias, times each query both ways in the same run, prints a table, and deletes the
index. Goal: HTTP p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.adapters.search import DocWrite, SearchPort  # noqa: E402
from infra.settings import Settings, get_settings  # noqa: E402
from projections.read_models.search import INDEX_SETTINGS, MAPPINGS  # noqa: E402
from projections.registry import projection_topics  # noqa: E402
from read_api.app import create_app  # noqa: E402
from read_api.config import ReadApiConfig  # noqa: E402
from read_api.search import FACET_AGGS, SORTS, SOURCE_FIELDS, SearchParams, keyword_query  # noqa: E402

GOAL_P95_MS = 50.0
ADJECTIVES = ("vintage", "modern", "compact", "professional", "classic", "portable", "wireless", "handmade",
              "refurbished", "rare", "lightweight", "heavy", "antique", "digital", "analog", "premium")
NOUNS = ("camera", "lens", "tripod", "guitar", "amplifier", "lamp", "chair", "table", "bicycle", "watch",
         "jacket", "novel", "dataset", "model", "keyboard", "monitor", "speaker", "turntable", "drone", "sofa")
BRANDS = ("Leica", "Canon", "Nikon", "Fender", "Gibson", "Sony", "Bose", "Ikea", "Omega", "Trek", "Dell",
          "Logitech", "Technics", "DJI", "Herman")
CATEGORIES = ("cameras", "music", "furniture", "sport", "fashion", "books", "ai", "electronics")
KINDS = ("goods", "goods", "goods", "ai_model", "dataset")
CURRENCIES = ("EUR", "USD", "GBP")
TYPOS = {"camera": "camra", "vintage": "vintge", "guitar": "guitr", "amplifier": "amplifer", "bicycle": "bicyle",
         "turntable": "turntabel", "keyboard": "keybord", "professional": "profesional"}


def synthetic_listing(rng: random.Random, now: datetime) -> dict[str, Any]:
    noun, brand = rng.choice(NOUNS), rng.choice(BRANDS)
    title = f"{rng.choice(ADJECTIVES).title()} {brand} {noun}"
    description = (f"{rng.choice(ADJECTIVES)} {noun} by {brand}, {rng.choice(ADJECTIVES)} condition, "
                   f"ships with {rng.choice(NOUNS)} and {rng.choice(NOUNS)}")
    created = now - timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
    return {
        "title": title, "description": description, "category": rng.choice(CATEGORIES),
        "kind": rng.choice(KINDS), "status": "published" if rng.random() < 0.9 else "sold",
        "currency": rng.choice(CURRENCIES), "price_amount": rng.randrange(100, 500_000),
        "condition_score": round(rng.random(), 2), "seller_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "created_at": created.isoformat(), "boosted_until": None,
    }


def load_index(port: SearchPort, index: str, docs: int, workers: int = 4) -> float:
    """Bulk-index `docs` synthetic listings in parallel slices; returns the seconds it took."""
    now = datetime.now(UTC)

    def writes(seed: int, count: int) -> Iterator[DocWrite]:
        rng = random.Random(seed)
        for _ in range(count):
            yield DocWrite(str(uuid.UUID(int=rng.getrandbits(128))), 1, synthetic_listing(rng, now))

    started = time.perf_counter()
    share = -(-docs // workers)
    with ThreadPoolExecutor(workers) as pool:
        counts = [min(share, docs - i * share) for i in range(workers)]
        list(pool.map(lambda args: port.bulk(index, writes(*args)), enumerate(counts)))
    port.client.indices.put_settings(index=index, body={"index": {"refresh_interval": "1s"}})
    port.refresh(index)
    port.client.indices.forcemerge(index=index, max_num_segments=1)
    return time.perf_counter() - started


def query_mix(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Search parameters as frontends send them: words (some misspelt), filters, sorts, pages."""
    queries: list[dict[str, Any]] = []
    for _ in range(count):
        words = [rng.choice(ADJECTIVES), rng.choice(NOUNS)][: rng.choice((1, 2))]
        words = [TYPOS.get(word, word) if rng.random() < 0.3 else word for word in words]
        params: dict[str, Any] = {"q": " ".join(words), "size": 20}
        if rng.random() < 0.4:
            params["category"] = rng.choice(CATEGORIES)
        if rng.random() < 0.3:
            low = rng.randrange(0, 200_000)
            params |= {"price_min": low, "price_max": low + rng.randrange(1_000, 200_000)}
        if rng.random() < 0.2:
            params["condition_min"] = 0.5
        params["sort"] = rng.choice(("relevance", "relevance", "price_asc", "newest"))
        params["page"] = rng.choice((1, 1, 1, 2, 5))
        if rng.random() < 0.1:
            params = {"size": 20, "sort": "newest"}  # browsing without words
        queries.append(params)
    return queries


def raw_search(port: SearchPort, alias: str) -> Callable[[dict[str, Any]], None]:
    """The same request the API makes, sent straight to the index."""

    def run(params: dict[str, Any]) -> None:
        parsed = SearchParams.model_validate(params)
        port.search(alias, keyword_query(parsed), aggs=FACET_AGGS, size=parsed.size, from_=parsed.offset,
                    sort=SORTS[parsed.sort], source=list(SOURCE_FIELDS))

    return run


def http_search(client: httpx.Client) -> Callable[[dict[str, Any]], None]:
    def run(params: dict[str, Any]) -> None:
        response = client.get("/v1/listings/search", params=params)
        response.raise_for_status()

    return run


def serve_in_thread(settings: Settings, alias: str) -> tuple[uvicorn.Server, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # The throttle stays in the path (its Redis round trip is part of the cost) but never trips here.
    config = ReadApiConfig(search_alias=alias, rate_limit="100000/second",
                           rate_limit_prefix=f"bench-{uuid.uuid4().hex}")
    app = create_app(settings, projection_topics=projection_topics(), config=config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the read API did not start")
        time.sleep(0.05)
    return server, port


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(runners: dict[str, Callable[[dict[str, Any]], None]], queries: list[dict[str, Any]],
            warmup: int) -> dict[str, list[float]]:
    """Milliseconds per query for each runner, interleaved so both see the same cache and load."""
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for i, params in enumerate(queries):
        for name, run in runners.items():
            started = time.perf_counter()
            run(params)
            elapsed = (time.perf_counter() - started) * 1000
            if i >= warmup:
                timings[name].append(elapsed)
    return timings


def report(timings: dict[str, list[float]], docs: int, load_s: float) -> bool:
    print(f"\nsearch latency, {docs:,} listings indexed in {load_s:.1f} s ({docs / load_s:,.0f} docs/s)")
    print(f"{'path':<28}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, samples in timings.items():
        print(f"{name:<28}{len(samples):>6}{percentile(samples, 50):>10.2f}{percentile(samples, 95):>10.2f}"
              f"{percentile(samples, 99):>10.2f}{statistics.fmean(samples):>10.2f}")
    p95 = percentile(timings["read API (HTTP)"], 95)
    ok = p95 < GOAL_P95_MS
    print(f"goal: HTTP p95 < {GOAL_P95_MS:.0f} ms -> {p95:.2f} ms {'MET' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    settings = get_settings()
    port = SearchPort.from_settings(settings)
    alias = f"bench-listings-{uuid.uuid4().hex[:8]}"
    index = f"{alias}-v1"
    port.create_index(index, MAPPINGS, {**INDEX_SETTINGS, "refresh_interval": "-1"})
    try:
        port.swap_alias(alias, index)
        load_s = load_index(port, index, args.docs)
        server, http_port = serve_in_thread(settings, alias)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
                queries = query_mix(random.Random(7), args.queries + args.warmup)
                runners = {"read API (HTTP)": http_search(client), "search client (direct)": raw_search(port, alias)}
                ok = report(measure(runners, queries, args.warmup), args.docs, load_s)
        finally:
            server.should_exit = True
    finally:
        port.delete_index(index)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
