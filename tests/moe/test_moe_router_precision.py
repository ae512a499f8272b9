"""Router softmaxes stay fp32 under a bf16 autocast: for every registered method, the gate weights and logits
its routers produce in a bf16-autocast forward are float32 (the matmuls around them run in bf16)."""

from __future__ import annotations

import pytest
import torch

from loralab.moe.methods.mtllora import MTLLoRALinear
from loralab.moe.registry import all_methods
from loralab.moe.routers import Router, TaskEmbeddingRouter, TokenRouter
from loralab.moe.state import RoutingState

from .contract import batch, build

ROUTED = sorted(name for name, spec in all_methods().items() if spec.contract is not None)


def test_token_and_task_routers_softmax_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    token = TokenRouter(16, 4, top_k=2, renormalize=True)
    task = TaskEmbeddingRouter(3, 4, embed_dim=8)
    x = torch.randn(2, 5, 16, dtype=torch.bfloat16)
    state = RoutingState()
    state.task_ids = torch.tensor([0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.bfloat16  # autocast is on
        outputs = [token(x, state), task(x, state)]
    for weights, logits in outputs:
        assert weights.dtype == torch.float32 and logits.dtype == torch.float32
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


def test_fp32_router_softmax_is_unchanged_bit_for_bit():
    """Asking softmax for fp32 explicitly changes nothing for fp32 input (fp32 results stay as they were)."""
    torch.manual_seed(1)
    router = TokenRouter(16, 4)
    x = torch.randn(2, 5, 16)
    weights, logits = router(x, RoutingState())
    assert torch.equal(weights, torch.softmax(logits / router.temperature, dim=-1))


@pytest.mark.parametrize("method", ROUTED)
def test_every_method_routes_in_fp32_under_bf16_autocast(method, tiny_libraries, monkeypatch):
    lm, moe = build(method, "llama", tiny_libraries)
    moe.eval()
    seen: list[tuple[str, torch.dtype]] = []

    def record(module, args, output):
        weights, logits = output
        seen.extend([("weights", weights.dtype), ("logits", logits.dtype)])

    for module in moe.modules():
        if isinstance(module, Router):
            module.register_forward_hook(record)
    original = MTLLoRALinear.head_weights  # MTL-LoRA's per-task head softmax is not a Router module

    def head_weights(self, ids):
        weights, logits = original(self, ids)
        seen.extend([("weights", weights.dtype), ("logits", logits.dtype)])
        return weights, logits

    monkeypatch.setattr(MTLLoRALinear, "head_weights", head_weights)
    b = batch(lm.tokenizer, task_id=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task_ids=b["task_ids"])
    assert out.logits.dtype == torch.bfloat16  # the model's matmuls did run in bf16
    gates = [dtype for _, dtype in seen]
    if method not in ("more", "multilora"):  # (these two have no router: a fixed mix)
        assert gates, f"{method}: no router ran"
    assert set(gates) <= {torch.float32}, f"{method}: router outputs {set(gates)}"
