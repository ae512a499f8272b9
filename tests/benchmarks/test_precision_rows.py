"""benchmarks/run's precision rows: N/A verdicts, the recorded machine header, the FLOP model, the bf16 emulation.

No benchmark runs here (the suite stays free of timing): `run --from-json` on hand-written script JSON."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _flops import inventory, train_step_flops  # noqa: E402
from precision_agreement import EmulatedBf16, to_bf16_and_back  # noqa: E402

MACHINE = {"cpu": "Test CPU 9000", "arch": "x86_64", "cpu_count": 64,
           "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False},
           "torch_cpu_capability": "AVX512", "torch": "9.9.9", "device": "cpu", "bf16_native": False,
           "bf16_reason": "no AVX512-BF16", "threads": 4}


def load_run():
    loader = importlib.machinery.SourceFileLoader("bench_run_script", str(BENCH / "run"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def write_results(folder: Path, scripts: dict[str, dict]) -> None:
    runs = {key: {"rc": 0, "seconds": 1.0, "log": str(folder / f"{key}.log"), "cmd": [f"benchmarks/{key}.py"],
                  "load_before": 0.0, "git": "abc", "machine": MACHINE, "date": "2026-01-01 00:00"}
            for key in scripts}
    (folder / "runs.json").write_text(json.dumps(runs), encoding="utf-8")
    for key, data in scripts.items():
        (folder / f"{key}.json").write_text(json.dumps(data), encoding="utf-8")


def test_na_rows_are_neither_pass_nor_failure_and_header_comes_from_the_record(tmp_path: Path, capsys) -> None:
    na = {"status": "n/a", "reason": "no AVX512-BF16; CPU Test CPU 9000, flags: avx512_bf16 no", "what": "x"}
    write_results(tmp_path, {"precision_step": na, "mc_eval_bf16": na, "quickstart_precision": na})
    out = tmp_path / "table.md"
    rc = load_run().main(["--from-json", str(tmp_path), "--only", "7,8,10", "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    assert rc == 0
    rows = [line for line in text.splitlines() if line.startswith(("| 7 ", "| 8 ", "| 10 "))]
    assert len(rows) == 3
    assert all("N/A (no native bf16 on this device)" in r and "flags: avx512_bf16 no" in r for r in rows)
    # the recorded machine, not the one rebuilding the table; n/a scripts measured nothing, so no thread count
    assert "Machine: Test CPU 9000 (x86_64, 64 CPUs); CPU flags: avx2 yes, avx512f yes, avx512_bf16 no" in text
    assert "torch 9.9.9" in text and "Torch threads" not in text


def test_missing_json_is_an_error_and_fails_the_run(tmp_path: Path) -> None:
    write_results(tmp_path, {})
    rc = load_run().main(["--from-json", str(tmp_path), "--only", "7", "--out", str(tmp_path / "t.md")])
    assert rc == 1
    assert "| ERROR |" in (tmp_path / "t.md").read_text(encoding="utf-8")


def test_emulated_timings_are_not_judged(tmp_path: Path) -> None:
    stats = {"median": 5.0, "q1": 4.0, "q3": 6.0, "min": 4.0, "max": 6.0, "n": 2, "values": [4.0, 6.0]}
    data = {"status": "measured", "bf16": "emulated", "bf16_reason": "no AMX", "ratio": stats,
            "seconds_per_step_median": {"fp32": 0.1, "bf16": 0.5},
            "memory": {"peak_mib": {"fp32": None, "bf16": None}},
            "model": "tiny-llama", "task": "t", "batch_size": 8, "repeats": 2, "steps": 2,
            "loss": {"ok": True, "steps": 3, "final": {"fp32": 1.0, "bf16": 1.001}, "final_rel_diff": 1e-3,
                     "max_rel_diff_allowed": 0.1, "max_abs_diff": 1e-3}}
    write_results(tmp_path, {"precision_step": data})
    rc = load_run().main(["--from-json", str(tmp_path), "--only", "7", "--out", str(tmp_path / "t.md")])
    row = next(r for r in (tmp_path / "t.md").read_text(encoding="utf-8").splitlines() if r.startswith("| 7 "))
    assert rc == 0  # a 5x "ratio" would FAIL the <= 0.5 bound if it were judged
    assert "N/A (no native bf16 on this device)" in row and "bf16 emulated" in row


class _Toy(nn.Module):
    """One decoder linear (4 -> 6), a rank-2 LoRA on it, and an LM head (6 -> 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=1, hidden_size=6)
        self.proj = nn.Linear(4, 6)
        self.lora_A = nn.ModuleDict({"default": nn.Linear(4, 2, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(2, 6, bias=False)})
        self.lm_head = nn.Linear(6, 10, bias=False)


def test_flop_inventory_splits_base_lora_and_head() -> None:
    inv = inventory(_Toy())
    assert (inv.base, inv.lora, inv.head) == (24, 8 + 12, 60)
    f = train_step_flops(inv, rows=2, length=5, head_rows=3)
    # frozen linear: forward + input gradient (2 x 2 x 24 per token); LoRA: 3 x forward; head on its 3 rows: 2 x
    assert f["flops"] == 2 * 2 * 24 * 10 + 3 * 2 * 20 * 10 + 2 * 2 * 60 * 3
    with pytest.raises(ValueError, match="lm_head"):
        inventory(nn.Sequential(nn.Linear(2, 2)))


def test_emulated_bf16_rounds_operands_and_result_of_linear() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    x = torch.randn(8, 64)
    with torch.no_grad():
        with EmulatedBf16() as mode:
            emulated = layer(x)
        expected = to_bf16_and_back(F.linear(to_bf16_and_back(x), to_bf16_and_back(layer.weight),
                                             to_bf16_and_back(layer.bias)))
        exact = layer(x)
    assert torch.equal(emulated, expected)
    assert torch.equal(emulated, to_bf16_and_back(emulated))  # every output value is a bf16 value
    rel = float((emulated - exact).norm() / exact.norm())
    assert 1e-4 < rel < 2e-2  # bf16-sized: not 0, not O(1)
    assert mode.calls["linear"] == 1
