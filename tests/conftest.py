"""Test-wide setup: offline hub, and the shared BIG-bench/GSM8K folder when it sits beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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


def _fake_cpu(monkeypatch, *, native: bool) -> None:
    """Pretend the CPU has (or lacks) native bf16, whatever this machine has (torch's capability probes)."""
    from loralab.utils import precision

    precision.cpu_bf16_features.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _auto_is_fp32_unless_a_test_asks():
    """The whole session (module- and session-scoped fixtures included) sees a CPU without native bf16, so `auto`
    precision is fp32 whatever this machine has; tests of the bf16 path ask for `cpu_with_bf16`, which
    overrides it for one test. Otherwise expected outputs would depend on the CPU the suite runs on."""
    from loralab.utils import precision

    with pytest.MonkeyPatch.context() as mp:
        _fake_cpu(mp, native=False)
        yield
    precision.cpu_bf16_features.cache_clear()


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """A CPU without AVX512-BF16 or AMX: `auto` resolves to fp32 on it."""
    from loralab.utils import precision

    _fake_cpu(monkeypatch, native=False)
    yield
    precision.cpu_bf16_features.cache_clear()


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    """A CPU with AVX512-BF16: `auto` resolves to bf16 on it."""
    from loralab.utils import precision

    _fake_cpu(monkeypatch, native=True)
    yield
    precision.cpu_bf16_features.cache_clear()
