"""Analytic FLOP counts of a LoRA training step and of an evaluation forward, and the square-matmul peak.

Not a public module (a sibling import of the benchmark scripts, like `_bench`).

The FLOP model (one multiply-add = 2 FLOPs), counted from the model's `nn.Linear` modules:

* Forward, per token row pushed through the model (padding included: the hardware multiplies padded rows too):
  `2 * in * out` for every linear of the decoder blocks (q, k, v, o, gate, up, down), and for the LM head
  (`2 * hidden * vocab`) only on the rows whose logits are computed (training: the `logits_to_keep` positions of
  every batch row; evaluation: every row, `LoglikScorer` asks for all logits).
* LoRA adapters: `lora_A` (in -> r) and `lora_B` (r -> out) are linears too, counted the same way.
* Backward of a LoRA step with the base frozen: a frozen linear needs only the gradient of its input
  (`dX = dY W`, one more `2 * in * out` per row) and no weight gradient, so a frozen linear costs 2x its forward
  and not the 3x of full fine-tuning; the head is frozen too (2x on its kept rows). A LoRA linear needs both
  its input and its weight gradient: 3x its forward. So a step is `4 * base + 6 * lora + 4 * head` multiply-add
  pairs per row (times the rows each applies to). Layer 0's q/k/v need no input gradient (the embedding is frozen);
  counting it anyway overstates SmolLM2-135M's step by about 0.2 %.
* Excluded, and reported separately as `attention_flops_excluded`: the attention score and value products
  (`Q K^T` and `P V`: `4 * rows * length * hidden` per layer forward, over the padded length, without the causal
  half, as the CPU kernels compute it; 2x more in a backward). Also excluded: norms, activations, softmax,
  residual adds, dropout, the loss, and the optimiser update of the LoRA weights (elementwise, memory-bound).

Achieved GFLOP/s = these FLOPs / measured seconds; "fraction of peak" divides by the best square-matmul rate
measured in the same process with the same threads and dtype (`matmul_peak`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LinearInventory:
    """Multiply-adds per token row: decoder linears of the base model, LoRA linears, and the LM head."""

    base: int
    lora: int
    head: int
    layers: int
    hidden: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inventory(model: nn.Module) -> LinearInventory:
    """Sum `in * out` over the model's linears, split into base, LoRA (`lora_A`/`lora_B`) and head (`lm_head`)."""
    base = lora = head = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        macs = module.in_features * module.out_features
        parts = name.split(".")
        if "lora_A" in parts or "lora_B" in parts:
            lora += macs
        elif parts[-1] == "lm_head":
            head += macs
        else:
            base += macs
    if head == 0:
        raise ValueError("no lm_head linear found: the FLOP model needs a causal LM with an LM head")
    config = model.config
    return LinearInventory(base, lora, head, int(config.num_hidden_layers), int(config.hidden_size))


def train_step_flops(inv: LinearInventory, rows: int, length: int, head_rows: int) -> dict[str, float]:
    """FLOPs of one LoRA step on a (rows x length) padded batch with logits on `head_rows` rows (module doc)."""
    tokens = rows * length
    counted = 2.0 * (2 * inv.base * tokens + 3 * inv.lora * tokens + 2 * inv.head * head_rows)
    attention = 3 * 4.0 * rows * length * length * inv.hidden * inv.layers  # fwd + 2x bwd, not counted
    return {"flops": counted, "attention_flops_excluded": attention}


def forward_flops(inv: LinearInventory, rows: int, length: int) -> dict[str, float]:
    """FLOPs of one no-grad forward of a (rows x length) batch with logits on every row (module doc)."""
    tokens = rows * length
    counted = 2.0 * (inv.base + inv.lora + inv.head) * tokens
    attention = 4.0 * rows * length * length * inv.hidden * inv.layers
    return {"flops": counted, "attention_flops_excluded": attention}


def matmul_peak(sizes: list[int], dtype: torch.dtype, device: str, min_seconds: float = 0.5,
                min_reps: int = 3) -> dict[str, Any]:
    """Best achieved GFLOP/s of an (n x n) @ (n x n) matmul over `sizes`, each timed at least `min_reps` times
    and `min_seconds` after one warm-up; the peak is the best single timing of any size."""
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        _sync(device)
        a @ b  # warm-up: kernel selection, page faults
        _sync(device)
        best, reps, spent = float("inf"), 0, 0.0
        while reps < min_reps or spent < min_seconds:
            start = time.perf_counter()
            a @ b
            _sync(device)
            seconds = time.perf_counter() - start
            best, reps, spent = min(best, seconds), reps + 1, spent + seconds
        per_size[str(n)] = {"best_seconds": best, "reps": reps, "gflops": 2.0 * n ** 3 / best / 1e9}
        del a, b
    peak = max(per_size.values(), key=lambda r: r["gflops"])
    return {"gflops": peak["gflops"], "per_size": per_size, "dtype": str(dtype).replace("torch.", "")}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
