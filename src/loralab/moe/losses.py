"""Auxiliary losses as pure functions of collected router outputs (padding masked).

* `load_balancing_loss`: Switch/Mixtral load balancing, as MixLoRA uses it: router logits of all
  layers are concatenated, then `E * sum_e f_e * P_e` with f the fraction of top-k slots routed to
  expert e and P its mean router probability (transformers `load_balancing_loss_func`).
* `localized_balancing_loss`: LoRAMoE's localized balancing constraint (LBC) for one layer,
  `var(Z) / mean(Z)^2` (the squared coefficient of variation, as the official code and its
  maintainer in issue #3 define it; the paper writes var/mean) with `Z = I * Q`, `Q[b, n]` the gate
  weight of expert n averaged over the real tokens of sample b, and `I[b, n] = 1 + delta` when expert n
  belongs to the group of the sample's task type (first half of the experts for type 1, second half for
  type 0), else `1 - delta`.

  Deviation from the official code, which sums the gate over all T positions of each sample (padding
  included): Q is the per-sample mean over real tokens. var/mean^2 does not change when every Q row is
  scaled by the same factor, so for unpadded batches of equal length (the official script runs one
  sample per device) this is the official value. With padding masked and samples of different
  lengths, a sum would make Q[b] proportional to sample b's length, so the length spread alone would
  enter var/mean^2 whatever the router does; the mean keeps the statistic about routing only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _token_mask(mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """(B, T) attention mask -> (B, T, 1) float mask matching router outputs of shape (B, T, E)."""
    if mask is None or shape[1] == 1:
        return None
    return mask[:, -shape[1]:].to(torch.float32)[..., None]


def load_balancing_loss(router_logits: Sequence[torch.Tensor], top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mixtral-style load-balancing loss over every layer's logits (each (B, T, E)); padding masked."""
    num_experts = router_logits[0].shape[-1]
    probs, slots, weights = [], [], []
    for logits in router_logits:
        p = torch.softmax(logits.float(), dim=-1)
        chosen = F.one_hot(p.topk(top_k, dim=-1).indices, num_experts).float()  # (B, T, k, E)
        m = _token_mask(attention_mask, logits.shape)
        m = torch.ones_like(p[..., :1]) if m is None else m
        probs.append((p * m).reshape(-1, num_experts))
        slots.append((chosen * m[..., None]).reshape(-1, top_k, num_experts))
        weights.append(m.reshape(-1))
    total = torch.cat(weights).sum().clamp_min(1.0)
    fraction = torch.cat(slots).sum(dim=0) / total  # (k, E): share of tokens whose j-th choice is e
    mean_prob = torch.cat(probs).sum(dim=0) / total  # (E,)
    return num_experts * (fraction * mean_prob[None, :]).sum()


def localized_balancing_loss(weights: torch.Tensor, task_types: torch.Tensor, delta: float,
                             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """LoRAMoE's LBC for one layer. weights: (B, T, E) gate weights; task_types: (B,) in {0, 1}.

    Samples without a real token (all padding) have no gate statistics and are left out.
    """
    m = _token_mask(attention_mask, weights.shape)
    if m is None:
        q = weights.float().mean(dim=1)  # (B, E)
    else:
        counts = m.sum(dim=1)  # (B, 1) real tokens per sample
        real = counts[:, 0] > 0
        q = ((weights.float() * m).sum(dim=1) / counts.clamp_min(1.0))[real]
        task_types = task_types.to(q.device)[real]
    num_experts = q.shape[-1]
    first_half = torch.arange(num_experts, device=q.device) < num_experts // 2  # (E,)
    favoured = torch.where(task_types.to(q.device)[:, None] == 1, first_half[None, :], ~first_half[None, :])
    z = q * torch.where(favoured, 1.0 + delta, 1.0 - delta)
    if z.numel() <= 1:  # no spread to measure (torch.var of one element is NaN)
        return z.new_zeros(())
    return z.flatten().var() / (z.flatten().mean() ** 2 + 1e-10)
