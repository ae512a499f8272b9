"""MoRE's chosen ranks, read from a checkpoint alone (no base model needed).

The rank a task gets in a module is argmax softmax(W_g e_t + b_g); the checkpoint holds W_g, b_g and the
task-embedding table of every module, so the choice can be recomputed exactly from the safetensors file.
The training history (mean chosen rank per task at every logging step) is in the checkpoint's metadata.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loralab.errors import AdapterError

_SUFFIX = ".router.task_embedding.weight"


@dataclass
class RankReport:
    """Attributes:
        tasks: Training tasks in task-id order.
        max_rank: R.
        ranks: {task: {module: chosen rank 1..R}}.
        history: [{"step": s, "more/mean_rank/<task>": mean chosen rank, ...}] from training.
    """

    tasks: list[str]
    max_rank: int
    ranks: dict[str, dict[str, int]]
    history: list[dict[str, float]] = field(default_factory=list)

    def mean_rank(self, task: str) -> float:
        values = list(self.ranks[task].values())
        return sum(values) / max(len(values), 1)

    def histogram(self, task: str) -> list[int]:
        """Number of modules that chose rank 1..R."""
        counts = Counter(self.ranks[task].values())
        return [counts.get(r, 0) for r in range(1, self.max_rank + 1)]

    def markdown(self) -> str:
        head = "| task | mean rank | " + " | ".join(f"r={r}" for r in range(1, self.max_rank + 1)) + " |"
        lines = [head, "|" + "---|" * (self.max_rank + 2)]
        for task in self.tasks:
            lines.append(f"| {task} | {self.mean_rank(task):.2f} | " + " | ".join(map(str, self.histogram(task))) + " |")
        if self.history:
            lines += ["", "| step | " + " | ".join(self.tasks) + " |", "|" + "---|" * (len(self.tasks) + 1)]
            for row in self.history:
                values = [f"{row.get(f'more/mean_rank/{t}', float('nan')):.2f}" for t in self.tasks]
                lines.append(f"| {int(row['step'])} | " + " | ".join(values) + " |")
        return "\n".join(lines) + "\n"


def rank_report(path: str | os.PathLike[str]) -> RankReport:
    """Chosen ranks per task and module of a MoRE checkpoint, and their history during training."""
    import torch

    from loralab.library.adapters import check_finite, load_safetensors, read_artifact_json
    from loralab.library.store import verify_files
    from loralab.moe.model import CONFIG_FILE, WEIGHTS_FILE

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise AdapterError(f"{path}: not a loralab method checkpoint (no {CONFIG_FILE})")
    meta = read_artifact_json(path / CONFIG_FILE, "method config")
    if not isinstance(meta, dict):
        raise AdapterError(f"{path / CONFIG_FILE}: must be a JSON object, got {type(meta).__name__}")
    if meta.get("method") != "more":
        raise AdapterError(f"{path}: a {meta.get('method')!r} checkpoint; chosen ranks exist only for 'more'")
    if "files" in meta:  # recorded since checkpoints carry hashes: the ranks come from verified weights
        verify_files(path, meta["files"], path / CONFIG_FILE)
    tensors = load_safetensors(path / WEIGHTS_FILE)
    check_finite(tensors, path / WEIGHTS_FILE)
    ranks: dict[str, dict[str, int]] = {t: {} for t in meta["tasks"]}
    max_rank = int(meta["config"]["rank"])
    for key in sorted(k for k in tensors if k.endswith(_SUFFIX)):
        prefix = key[: -len(_SUFFIX)]
        logits = tensors[key].float() @ tensors[f"{prefix}.router.gate.weight"].float().t()
        choice = torch.softmax(logits + tensors[f"{prefix}.router.gate.bias"].float(), dim=-1).argmax(dim=-1)
        module = prefix.removeprefix("model.")
        for task, c in zip(meta["tasks"], choice.tolist()):
            ranks[task][module] = int(c) + 1
    # checkpoints written before the trainer kept one record per step list the last step twice: keep its last
    history = list({int(row["step"]): row for row in meta.get("train", {}).get("history", [])}.values())
    return RankReport(list(meta["tasks"]), max_rank, ranks, history)
