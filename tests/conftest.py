"""Shared fixtures. Real data lives in ``../shared`` beside the project root; tests that
need it skip with a reason where it is absent (a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mead_clips" / "videos").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (a user's clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mead_video(shared_data) -> Path:
    return shared_data / "mead_clips" / "videos" / "M030_front_happy_level3_001.mp4"


@pytest.fixture(scope="session")
def checkpoint() -> str:
    """The bundled default model (shipped inside the package, so always present)."""
    from omgclip.learn.checkpoint import default_checkpoint

    return str(default_checkpoint())
