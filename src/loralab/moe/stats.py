"""Router statistics from recorded router outputs: what gets logged during training and analysed after."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from loralab.moe.state import RouterRecord


def expert_load(records: Sequence[RouterRecord], attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(E,) mean gate weight per expert over real tokens and all recorded routers."""
    total, count = None, 0.0
    for r in records:
        w = r.weights.detach().float()
        w = w.reshape(-1, w.shape[-1]) if w.dim() > 2 else w
        if attention_mask is not None and r.weights.dim() == 3 and r.weights.shape[1] > 1:
            m = attention_mask[:, -r.weights.shape[1]:].reshape(-1).to(w.device, torch.float32)
        else:
            m = torch.ones(w.shape[0], device=w.device)
        s = (w * m[:, None]).sum(0)
        total = s if total is None else total + s
        count += float(m.sum())
    if total is None:
        return torch.zeros(0)
    return total / max(count, 1.0)


def router_summary(records: Sequence[RouterRecord], attention_mask: torch.Tensor | None = None) -> dict[str, float]:
    """Per-expert mean gate (`router/expert_i`) and the entropy of that load (`router/load_entropy`)."""
    load = expert_load(records, attention_mask)
    if load.numel() == 0:
        return {}
    p = load / load.sum().clamp_min(1e-12)
    stats = {f"router/expert_{i}": float(v) for i, v in enumerate(load)}
    stats["router/load_entropy"] = float(-(p * p.clamp_min(1e-12).log()).sum())
    return stats
