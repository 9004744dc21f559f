"""Generated secrets are made once, kept private, and the same for every later reader."""

from __future__ import annotations

import stat
from itertools import count
from pathlib import Path

from infra.secrets import stored_secret
from infra.settings import Settings


def test_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    made = count()

    first = stored_secret(settings, "demo.secret", lambda: f"secret-{next(made)}")
    again = stored_secret(settings, "demo.secret", lambda: f"secret-{next(made)}")

    path = settings.secrets_dir / "demo.secret"
    assert first == again == "secret-0"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in settings.secrets_dir.iterdir()] == ["demo.secret"]
