"""Test-wide setup: offline hub, and the shared BIG-bench/GSM8K folder when it sits beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "LORALAB_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["LORALAB_DATA_DIR"] = str(_SHARED)


def shared_data_dir() -> Path | None:
    path = os.environ.get("LORALAB_DATA_DIR")
    return Path(path) if path and Path(path).is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    """The real task data; tests that need it skip (not fail) without it."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("no task data folder (set LORALAB_DATA_DIR or put shared/data beside the checkout)")
    return path
