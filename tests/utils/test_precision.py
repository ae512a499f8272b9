"""Precision resolution: auto follows the hardware, explicit choices are honoured or refused, fp32 is a no-op."""

from __future__ import annotations

import logging

import pytest
import torch

from loralab.errors import ConfigError
from loralab.utils import precision as P




def test_auto_on_a_cpu_without_bf16_is_fp32(cpu_without_bf16):
    p = P.resolve_precision("auto", "cpu")
    assert p.name == "fp32" and p.dtype is None and "neither AVX512-BF16 nor AMX" in p.reason


def test_auto_on_a_cpu_with_bf16_is_bf16_autocast(cpu_with_bf16):
    p = P.resolve_precision(None, torch.device("cpu"))
    assert p.name == "bf16" and p.dtype == torch.bfloat16 and "avx512_bf16" in p.reason
    with p.autocast():
        out = torch.randn(4, 8) @ torch.randn(8, 4)
    assert out.dtype == torch.bfloat16


def test_explicit_bf16_without_native_support_warns_and_is_honoured(cpu_without_bf16, caplog):
    with caplog.at_level(logging.WARNING):
        p = P.resolve_precision("bf16", "cpu")
    assert p.name == "bf16" and "emulated" in caplog.text


def test_fp16_on_cpu_and_unknown_names_are_one_line_errors():
    with pytest.raises(ConfigError, match="precision: 'fp16' runs on CUDA only"):
        P.resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match=r"precision: 'half' is not one of auto, fp32, bf16, fp16"):
        P.resolve_precision("half")


def test_fp32_autocast_is_a_no_op_bit_for_bit():
    torch.manual_seed(0)
    a, b = torch.randn(16, 32), torch.randn(32, 8)
    with P.resolve_precision("fp32").autocast():
        inside = a @ b
    assert torch.equal(inside, a @ b) and inside.dtype == torch.float32


def test_record_and_cpu_description():
    rec = P.resolve_precision("fp32").to_dict()
    assert rec["name"] == "fp32" and rec["requested"] == "fp32" and rec["device_type"] == "cpu"
    desc = P.cpu_description()
    assert set(desc) == {"cpu", "capability", "bf16_features"}
