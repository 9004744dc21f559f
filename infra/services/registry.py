"""The local services in start order, and what `./run up | down | status` does with them."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from infra.services.base import LocalService, ServiceStartError, ServiceState
from infra.settings import Settings


def local_services(settings: Settings) -> list[LocalService]:
    """Every store the platform needs, in the order they are installed and listed."""
    from infra.services.kafka import KafkaService
    from infra.services.opensearch import OpenSearchService
    from infra.services.postgres import PostgresService
    from infra.services.redis import RedisService

    return [PostgresService(settings), RedisService(settings), KafkaService(settings), OpenSearchService(settings)]


def install_all(services: list[LocalService], on_step: Callable[[str], None]) -> None:
    """Fetch binaries and jars one service at a time (Maven shares one local repository)."""
    for service in services:
        on_step(f"installing {service.name}")
        service.install()


def start_all(services: list[LocalService]) -> list[ServiceStartError]:
    """Start every service at once (the JVMs take the longest) and collect the failures."""
    errors: list[ServiceStartError] = []

    def start(service: LocalService) -> None:
        try:
            service.start()
        except ServiceStartError as exc:
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        list(pool.map(start, services))
    return errors


def stop_all(services: list[LocalService]) -> None:
    """Stop in reverse start order."""
    for service in reversed(services):
        service.stop()


def states(services: list[LocalService]) -> list[ServiceState]:
    """Probe each service now."""
    return [service.state() for service in services]
