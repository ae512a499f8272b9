"""LoRA selection: choose k library LoRAs for a target task (`loralab select`).

    from loralab.selection import select_experts
    chosen = select_experts("ppl", "smollm2-135m", "runs/lib", "multiemo_en", k=3)
    [(s.rank, s.task, s.score) for s in chosen]

Strategies (`all_selectors()`): `random` (seeded), `ppl` (lowest answer perplexity of each LoRA on a
few target train examples), `manual` (a relevance YAML, else same domain tag), `embedding` (cosine
of base-model prompt embeddings). The target's own LoRA is left out unless `exclude_own=False`.
"""

from loralab.selection.base import Selection, SelectionContext, Selector, rank_scores
from loralab.selection.registry import all_selectors, get_selector, register_selector
from loralab.selection.select import make_selector, select_experts

__all__ = ["Selection", "SelectionContext", "Selector", "all_selectors", "get_selector", "make_selector",
           "rank_scores", "register_selector", "select_experts"]
