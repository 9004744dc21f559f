"""The command API as the enrichment worker calls it: an admin service account over HTTP, retried with backoff."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from schemas.listing import EnrichListing

log = structlog.get_logger(__name__)

# 409s that mean "nothing to do" rather than "something is wrong": the listing is gone, or this very key
# was already used (a re-run whose scores moved by a rounding step): the first enrichment stands.
SETTLED_CONFLICTS = {"listing.closed": "closed", "idempotency.key_reused": "replayed"}
Outcome = Literal["appended", "replayed", "closed"]


class TransientError(Exception):
    """Worth retrying: the API or the network failed, or it asked us to slow down."""


class AuthenticationError(Exception):
    """The service account cannot log in: no listing is at fault, so the worker stops instead of dead-lettering."""


class PermanentError(Exception):
    """The API refused the command for a reason a retry cannot change; `reason` goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    """The worker's admin service account."""

    email: str
    password: str


class CommandClient:
    """Thread-safe: one httpx client, one bearer token refreshed on 401."""

    def __init__(self, base_url: str, credentials: Credentials, *, max_attempts: int = 5,
                 timeout_s: float = 30.0, backoff_max_s: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/v1", timeout=timeout_s,
                                  limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
        self._credentials = credentials
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self._retrying = Retrying(stop=stop_after_attempt(max_attempts), reraise=True,
                                  wait=wait_exponential_jitter(multiplier=0.2, max=backoff_max_s, jitter=0.2),
                                  retry=retry_if_exception_type(TransientError))

    def login(self) -> str:
        """A fresh token; AuthenticationError when the account is refused."""
        with self._token_lock:
            response = self._call("POST", "/auth/token", json={"email": self._credentials.email,
                                                              "password": self._credentials.password})
            if response.status_code != 200:
                raise AuthenticationError(
                    f"service account login failed: {response.status_code} {response.text[:300]}")
            self._token = str(response.json()["access_token"])
            return self._token

    def enrich(self, command: EnrichListing, idempotency_key: str) -> Outcome:
        """POST the command; retried on transient faults, PermanentError on a refusal."""
        outcome: Outcome = self._retrying(self._enrich_once, command, idempotency_key)
        return outcome

    def _enrich_once(self, command: EnrichListing, idempotency_key: str) -> Outcome:
        token = self._token or self.login()
        body = command.model_dump(mode="json", exclude={"listing_id"}, exclude_none=True)
        response = self._call("POST", f"/listings/{command.listing_id}/enrichment", json=body,
                              headers={"Authorization": f"Bearer {token}", "Idempotency-Key": idempotency_key})
        if response.status_code == 200:
            return "replayed" if response.headers.get("Idempotent-Replayed") == "true" else "appended"
        if response.status_code == 401:
            self.login()
            raise TransientError("token refused; logged in again")
        code = _error_code(response)
        if response.status_code == 409 and code in SETTLED_CONFLICTS:
            settled: Outcome = SETTLED_CONFLICTS[code]  # type: ignore[assignment]
            return settled
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TransientError(f"{response.status_code} {code}")
        raise PermanentError(f"command API answered {response.status_code} {code}: {response.text[:500]}")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._http.close()


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "unknown"
