"""Secrets the platform generates for itself once, kept mode 600 under the project's secrets folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from infra.settings import Settings


def stored_secret(settings: Settings, name: str, generate: Callable[[], str]) -> str:
    """The secret in `secrets/<name>`, generated on first use; processes starting together agree on one."""
    path = settings.secrets_dir / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{name}.{os.getpid()}")
        draft.write_text(generate())
        draft.chmod(0o600)
        # link() refuses an existing target: whoever links first wins, the others read theirs.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    return path.read_text().strip()
