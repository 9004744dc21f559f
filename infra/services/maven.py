"""Jars from Maven Central: `mvn dependency:copy-dependencies` on a pom, once, into the jar cache."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from infra.services.base import ServiceStartError
from infra.settings import Settings


def maven_copy_dependencies(
    settings: Settings,
    pom: Path,
    dest: Path,
    log_file: Path,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Resolve a pom's runtime dependencies from Maven Central into dest (once; skipped when present)."""
    marker = dest / ".complete"
    if marker.exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={dest}",
        "-DincludeScope=runtime",
        # Pom properties such as a version chosen in settings (-Dkafka.version=...).
        *(f"-D{key}={value}" for key, value in (properties or {}).items()),
    ]
    with open(log_file, "ab") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise ServiceStartError(pom.parent.name, "mvn dependency:copy-dependencies failed", log_file)
    marker.write_text("ok\n")
