"""Run the read API under uvicorn on settings.bind_host:settings.read_api_port."""

from __future__ import annotations

import uvicorn

from infra.logging import configure_logging
from infra.settings import Settings
from read_api.app import create_app


def serve(settings: Settings, port: int | None = None) -> None:
    """Serve until interrupted (`bazaar serve-reads`)."""
    configure_logging()
    uvicorn.run(create_app(settings), host=settings.bind_host, port=port or settings.read_api_port,
                log_level="warning", access_log=False)
