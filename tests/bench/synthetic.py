"""Hand-made benchmark rows with per-example outcomes whose statistics are known (shared by the claim tests)."""

from __future__ import annotations

import numpy as np

from loralab.bench import Store

N = 100


def outcomes(correct, ids=None) -> list[dict]:
    ids = ids or [f"q{i:03d}" for i in range(len(correct))]
    return [{"id": i, "correct": float(c), "score": float(c) - 0.5, "metrics": {"acc": float(c)}}
            for i, c in zip(ids, correct, strict=True)]


def row(method, target, seed, correct, strategy=None, k=None, ids=None, model="m") -> dict:
    cell_id = f"{model}-{method}-{strategy}-{k}-{target}-{seed}"
    score = float(np.mean(correct))
    return {"cell_id": cell_id, "bench": "synthetic", "model": model, "method": method, "strategy": strategy, "k": k,
            "target": target, "seed": seed, "config": {"id": cell_id}, "primary_metric": "acc", "score": score,
            "n": len(correct), "split": "test", "metrics": {"acc": score, "acc_stderr": 0.05}, "experts": [],
            "selection": None, "own_lora": None, "train": None, "versions": {"loralab": "0"}, "git_hash": "abc",
            "seconds": 1.0, "host": "h", "executor": "local", "device": "cpu", "outcomes": outcomes(correct, ids)}


def base_and_flipped(gains: int, losses: int) -> tuple[np.ndarray, np.ndarray]:
    """b right on the first half; a = b with `gains` wrong -> right and `losses` right -> wrong."""
    b = (np.arange(N) < N // 2).astype(float)
    a = b.copy()
    a[N // 2: N // 2 + gains] = 1.0
    a[:losses] = 0.0
    return a, b


def synthetic_db(path, rows, claims=None):
    with Store(path) as db:
        db.put_many(rows)
        config = {"models": ["m"], "methods": sorted({r["method"] for r in rows}), "seeds": [0], "claims": claims}
        db.set_meta("bench", {"name": "synthetic", "plan": [r["cell_id"] for r in rows], "seeds": [0],
                              "config": config})
    return path


CLAIM = {"id": "moe-gain", "text": "MoE improves on the base model", "source": "Paper (2025)",
         "a": {"method": "moe"}, "b": {"method": "base"}, "direction": 1}
