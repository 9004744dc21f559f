"""Run the read API under uvicorn on settings.bind_host:settings.read_api_port."""

from __future__ import annotations

import uvicorn

from infra.logging import configure_logging
from infra.settings import Settings
from read_api.app import create_app
from read_api.consistency import ProjectionTopics


def serve(settings: Settings, projection_topics: ProjectionTopics, port: int | None = None) -> None:
    """Serve until interrupted (`bazaar serve-reads`, which hands in the projections' topics)."""
    configure_logging()
    app = create_app(settings, projection_topics=projection_topics)
    # proxy_headers=False: the throttle counts per connecting address; uvicorn would otherwise let any
    # local client name another address in X-Forwarded-For and get a fresh limit each request.
    uvicorn.run(app, host=settings.bind_host, port=port or settings.read_api_port, log_level="warning",
                access_log=False, proxy_headers=False)
