"""Router analysis: which experts does a trained LoRA-MoE method use, per task?

    from loralab.moe.analysis import analyze_router
    result = analyze_router("smollm2-135m", "runs/loramoe", ["social_iqa", "navigate"], limit=200, out="runs/router")

The model runs on each task's examples -- the prompt followed by the gold answer (the correct choice of a
multiple-choice task, the reference answer of a generation task), tokenised as the evaluation tokenises
them -- with router recording on. From the `RouterRecord`s of every routed layer it aggregates, per task:

* `mean_weight[task][e]`: the gate weight expert e gets, averaged over real tokens (padding masked) and
  over all routed layers (each (layer, token) decision counts once). For dense softmax routers (LoRAMoE)
  and renormalised top-k routers (Rocket) a task's row sums to 1; X-LoRA's rows sum to its
  `global_scaling_weight`. Task-routed methods give the gate of that task (one decision per token).
* `top1_share[task][e]`: the share of (layer, token) decisions whose largest gate is expert e.

A layer with fewer experts than the widest one counts as weight 0 for the experts it lacks. Experts are
labelled with the library tasks they came from (the checkpoint's provenance) when there is one per expert,
else e0..eN. `write_router_analysis` writes CSV and Markdown tables, a JSON record and a heatmap PNG
(matplotlib, without pyplot or a global backend), each file atomically, into a folder that is absent,
empty or a router analysis loralab wrote before (any other folder is refused, before any work).
"""

from __future__ import annotations

import csv
import inspect
import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from loralab.data import Task, load_task
from loralab.errors import AdapterError, UserInputError
from loralab.utils.io import atomic_path, atomic_write_json, atomic_write_text, check_output_dir, read_json

logger = logging.getLogger(__name__)

FILES = {"weights_csv": "router_weights.csv", "top1_csv": "router_top1.csv", "markdown": "router.md",
         "json": "router.json", "heatmap": "router_heatmap.png"}
OUTPUT_KIND = "router-analysis"  # the kind named in output checks (this folder has no marker file)


def is_router_analysis_dir(folder: Path) -> bool:
    """A router analysis loralab wrote: only its files, with its router.json (always written first) in its format.

    (No output marker: the folder holds exactly the files in `FILES`.)
    """
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if not names <= set(FILES.values()) or not (folder / FILES["json"]).is_file():
        return False
    data = read_json(folder / FILES["json"], what="router analysis")
    return isinstance(data, dict) and {"method", "experts", "tasks", "mean_weight"} <= set(data)


def check_router_out(out: str | os.PathLike[str], option: str = "--out") -> Path:
    """Fail before any work unless `out` is absent, empty, or a loralab router analysis folder."""
    return check_output_dir(out, kind=OUTPUT_KIND, what="router analysis folder", option=option,
                            recognise=is_router_analysis_dir)


@dataclass
class RouterAnalysis:
    """Per-task router statistics of one method checkpoint.

    Attributes:
        method: Registry name of the method.
        experts: Expert labels (library task names, else e0..eN).
        tasks: Analysed tasks, in row order.
        mean_weight: tasks x experts mean gate weight over real tokens and routed layers.
        top1_share: tasks x experts share of (layer, token) decisions whose top-1 expert is that expert.
        n_examples: Examples per task.
        n_tokens: Real (non-padding) tokens per task.
        layers: Names of the routed layers (routers), in first-seen order.
        per_layer: layer -> tasks x experts mean gate weight in that layer alone.
        meta: Model, adapter, split, limit, ... (provenance).
    """

    method: str
    experts: list[str]
    tasks: list[str]
    mean_weight: list[list[float]]
    top1_share: list[list[float]]
    n_examples: list[int]
    n_tokens: list[int]
    layers: list[str]
    per_layer: dict[str, list[list[float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table_csv(self, which: str = "mean_weight") -> str:
        """CSV of `mean_weight` or `top1_share`: one row per task, one column per expert."""
        values = getattr(self, _check_which(which))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["task", *self.experts, "n_examples", "n_tokens"])
        for task, row, n_ex, n_tok in zip(self.tasks, values, self.n_examples, self.n_tokens):
            writer.writerow([task, *(f"{v:.6f}" for v in row), n_ex, n_tok])
        return buf.getvalue()

    def table_markdown(self, which: str = "mean_weight", digits: int = 3) -> str:
        values = getattr(self, _check_which(which))
        lines = ["| task | " + " | ".join(self.experts) + " |", "|---|" + "---:|" * len(self.experts)]
        for task, row in zip(self.tasks, values):
            lines.append(f"| {task} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |")
        return "\n".join(lines)

    def markdown(self) -> str:
        m = self.meta
        prec = m.get("precision")
        head = (f"# Router analysis: {self.method}\n\n"
                f"model `{m.get('model')}`, adapter `{m.get('adapter')}`, split `{m.get('split')}`"
                f"{', precision ' + prec['name'] if isinstance(prec, dict) and 'name' in prec else ''}"
                f"{'' if m.get('limit') is None else ', limit ' + str(m.get('limit'))}; "
                f"{len(self.layers)} routed layers; prompt + gold answer tokens, padding masked.\n")
        counts = ", ".join(f"{t}: {e} examples / {k} tokens"
                           for t, e, k in zip(self.tasks, self.n_examples, self.n_tokens))
        return (f"{head}\n## Mean gate weight (over tokens and layers)\n\n{self.table_markdown('mean_weight')}\n\n"
                f"## Share of decisions whose top-1 expert is each expert\n\n{self.table_markdown('top1_share')}\n\n"
                f"{counts}\n")


def _check_which(which: str) -> str:
    if which not in ("mean_weight", "top1_share"):
        raise ValueError(f"which must be 'mean_weight' or 'top1_share', got {which!r}")
    return which


class _Accumulator:
    """Sums over batches for one task: gate weights and top-1 counts per expert, overall and per layer."""

    def __init__(self) -> None:
        self.weight: dict[str, torch.Tensor] = {}  # layer -> (E,) summed gate weight over real tokens
        self.top1: dict[str, torch.Tensor] = {}  # layer -> (E,) top-1 counts over real tokens
        self.decisions: dict[str, float] = {}  # layer -> real tokens routed there
        self.tokens = 0
        self.examples = 0

    def add(self, records, attention_mask: torch.Tensor) -> None:
        mask = attention_mask.to(torch.float64).cpu()
        self.tokens += int(mask.sum())
        for rec in records:
            w = rec.weights.detach().to(device="cpu", dtype=torch.float64)
            if w.dim() == 2:  # (B, E): one decision per sequence
                w = w[:, None, :]
            if w.shape[1] == 1:  # task routers: the gate applies to every real token of the sample
                tokens = mask.sum(1)[:, None]  # (B, 1)
            else:
                tokens = mask[:, -w.shape[1]:]  # (B, T)
            summed = (w * tokens[..., None]).sum((0, 1))
            top = torch.zeros_like(summed).index_add_(0, w.argmax(-1).reshape(-1), tokens.reshape(-1))
            self._add(rec.name, summed, top, float(tokens.sum()))

    def _add(self, name: str, weight: torch.Tensor, top1: torch.Tensor, n: float) -> None:
        if name in self.weight:
            old = self.weight[name]
            size = max(old.numel(), weight.numel())
            self.weight[name] = _pad(old, size) + _pad(weight, size)
            self.top1[name] = _pad(self.top1[name], size) + _pad(top1, size)
            self.decisions[name] += n
        else:
            self.weight[name], self.top1[name], self.decisions[name] = weight, top1, n


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(size - x.numel())]) if x.numel() < size else x


def expert_labels(moe, num_experts: int) -> list[str]:
    """Library task names from the checkpoint's provenance when there is one per expert, else e0..eN."""
    names = [str(p.get("task", "")) for p in (getattr(moe, "experts", None) or []) if isinstance(p, dict)]
    if len(names) == num_experts and all(names) and len(set(names)) == num_experts:
        return names
    return [f"e{i}" for i in range(num_experts)]


def sequences(task: Task, tokenizer, *, split: str = "test", limit: int | None = None, num_fewshot: int = 0,
              max_length: int = 2048) -> list[list[int]]:
    """Token ids of prompt + gold answer per example, split as the evaluation splits them (left-truncated)."""
    from loralab.eval.loglik import encode_pair, prefix_token_id

    prefix = prefix_token_id(tokenizer)
    out = []
    for ex in task.split(split, limit):
        prompt = task.prompt(ex, task.fewshot_examples(ex, num_fewshot))
        ctx, answer = encode_pair(tokenizer, prompt, ex.demonstration_answer(), prefix)
        out.append((ctx + answer)[-max_length:])
    return out


@torch.inference_mode()
def router_statistics(moe, tokenizer, tasks: Sequence[Task], *, split: str = "test", limit: int | None = None,
                      num_fewshot: int = 0, batch_size: int = 8, progress: bool = True,
                      meta: dict[str, Any] | None = None) -> RouterAnalysis:
    """Run a `MoEModel` on each task's examples with router recording on and aggregate the gates per task."""
    from loralab.moe.model import MoEModel
    from loralab.utils.progress import progress_bar

    if not isinstance(moe, MoEModel):
        raise AdapterError("router analysis needs a loralab method checkpoint (a MoEModel); this model has no router")
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be >= 1, got {batch_size}")
    task_seqs = [sequences(t, tokenizer, split=split, limit=limit, num_fewshot=num_fewshot,
                           max_length=_max_length(moe)) for t in tasks]
    moe.eval()
    device = next(moe.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    extra = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(moe.model.forward).parameters:
        extra["logits_to_keep"] = 1  # the logits are not needed; skip the LM head over the sequence
    accs = []
    with progress_bar(sum(map(len, task_seqs)), "routing", progress) as advance:
        for task, seqs in zip(tasks, task_seqs):
            acc = _Accumulator()
            with moe.routing(task=task.name if task.name in moe.tasks else None, record=True):
                for start in range(0, len(seqs), batch_size):
                    batch = seqs[start:start + batch_size]
                    longest = max(map(len, batch))
                    ids = torch.tensor([s + [pad] * (longest - len(s)) for s in batch], device=device)
                    mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in batch], device=device)
                    try:
                        moe(input_ids=ids, attention_mask=mask, **extra)
                    except ValueError as exc:
                        if "routes by task" not in str(exc):
                            raise
                        trained = ", ".join(moe.tasks) or "no named tasks"
                        raise UserInputError(f"this {moe.method} checkpoint routes by task and was trained on "
                                             f"{trained}, not {task.name!r}") from None
                    acc.add(moe.state.records, mask)
                    acc.examples += len(batch)
                    advance(len(batch))
            moe.state.records = []
            accs.append(acc)
    return _summarise(moe, tasks, accs, {"split": split, "limit": limit, "num_fewshot": num_fewshot, **(meta or {})})


def _max_length(moe) -> int:
    return int(getattr(moe.config, "max_position_embeddings", 2048) or 2048)


def _summarise(moe, tasks: Sequence[Task], accs: list[_Accumulator], meta: dict[str, Any]) -> RouterAnalysis:
    layers: list[str] = []
    for acc in accs:
        layers += [name for name in acc.weight if name not in layers]
    if not layers:
        raise AdapterError(f"the {moe.method} checkpoint recorded no router decisions: it has no router to analyse")
    n_exp = max(acc.weight[name].numel() for acc in accs for name in acc.weight)
    rows_w, rows_t, per_layer = [], [], {name: [] for name in layers}
    for acc in accs:
        weight, top1, decisions = torch.zeros(n_exp, dtype=torch.float64), torch.zeros(n_exp, dtype=torch.float64), 0.0
        for name in layers:
            w = _pad(acc.weight.get(name, torch.zeros(0, dtype=torch.float64)), n_exp)
            n = acc.decisions.get(name, 0.0)
            weight, decisions = weight + w, decisions + n
            top1 = top1 + _pad(acc.top1.get(name, torch.zeros(0, dtype=torch.float64)), n_exp)
            per_layer[name].append((w / n).tolist() if n else [float("nan")] * n_exp)
        rows_w.append((weight / decisions).tolist() if decisions else [float("nan")] * n_exp)
        rows_t.append((top1 / decisions).tolist() if decisions else [float("nan")] * n_exp)
    return RouterAnalysis(method=moe.method, experts=expert_labels(moe, n_exp), tasks=[t.name for t in tasks],
                          mean_weight=rows_w, top1_share=rows_t, n_examples=[a.examples for a in accs],
                          n_tokens=[a.tokens for a in accs], layers=layers, per_layer=per_layer,
                          meta={"method_tasks": list(moe.tasks), **meta})


def analyze_router(
    model: str,
    adapter: str | os.PathLike[str],
    tasks: Sequence[str | Task],
    *,
    split: str = "test",
    limit: int | None = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    precision: str | None = "auto",
) -> RouterAnalysis:
    """Load `model` with the method checkpoint `adapter`, analyse its routing on `tasks`, write to `out` if given.

    Inputs are checked before the model loads: the device and `precision` ("auto", "fp32", "bf16", "fp16":
    the autocast of the forwards; a router's softmax stays fp32, its matmul does not), the tasks and their splits, and
    that `adapter` is a loralab method checkpoint (a plain PEFT adapter has no router: a one-line
    `AdapterError`). The resolved precision is `meta["precision"]`: gates under bf16 differ a little from fp32's.
    """
    from loralab.moe.adapters import attach_adapter
    from loralab.models import load_model
    from loralab.models.loading import check_device, model_device
    from loralab.moe.model import is_method_checkpoint
    from loralab.utils.precision import resolve_precision

    if out is not None:
        check_router_out(out)
    prec = resolve_precision(precision, check_device(device))
    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in tasks]
    if not task_objs:
        raise UserInputError("--task must name at least one task")
    for t in task_objs:
        t.split(split, limit)  # an empty split fails here, before any model loads
    path = Path(adapter)
    if not path.is_dir():
        raise AdapterError(f"adapter directory does not exist: {path}")
    if not is_method_checkpoint(path):
        is_peft = (path / "adapter_config.json").is_file()
        kind = "a plain PEFT adapter" if is_peft else "not a loralab method checkpoint"
        raise AdapterError(f"{path} is {kind}: it has no router to analyse (train one with `loralab train`)")
    lm = load_model(model, device=device)
    moe = attach_adapter(lm.model, path)
    if prec.device_type != model_device(moe).type:  # autocast is per device type
        prec = resolve_precision(prec.name, model_device(moe))
    meta = {"model": lm.name, "model_source": lm.source, "adapter": str(path), "precision": prec.to_dict()}
    with prec.autocast():
        result = router_statistics(moe, lm.tokenizer, task_objs, split=split, limit=limit, num_fewshot=num_fewshot,
                                   batch_size=batch_size, progress=progress, meta=meta)
    if out is not None:
        write_router_analysis(result, out)
    return result


def write_router_analysis(result: RouterAnalysis, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the CSV tables, Markdown, JSON and heatmap PNG into folder `out`; returns their paths.

    Each file is written atomically. Without matplotlib the heatmap is skipped with a warning.
    """
    from loralab.utils.env import git_hash, package_versions

    folder = check_router_out(out)
    paths = {key: folder / name for key, name in FILES.items()}
    # router.json first: a folder left by an interruption then still shows it is a router analysis
    atomic_write_json(paths["json"], {**result.to_dict(), "versions": package_versions(), "git_hash": git_hash()})
    atomic_write_text(paths["weights_csv"], result.table_csv("mean_weight"))
    atomic_write_text(paths["top1_csv"], result.table_csv("top1_share"))
    atomic_write_text(paths["markdown"], result.markdown())
    try:
        write_heatmap(result, paths["heatmap"])
    except ImportError:
        logger.warning("matplotlib is not installed: no heatmap (pip install matplotlib)")
        del paths["heatmap"]
    return paths


def heatmap_figure(result: RouterAnalysis):
    """Two task x expert heatmaps side by side (mean gate weight, top-1 share), a matplotlib `Figure` (no pyplot).

    The colour scale is fixed, 0..1 (or the largest value, when X-LoRA's scaling exceeds 1), so two methods'
    figures read alike; it is a square-root scale (`PowerNorm(0.5)`), because with many experts every weight is
    small (1/E each under uniform routing) and a linear 0..1 scale would colour them all alike. The colour bar
    marks uniform routing (1 / number of experts), the chance level of a router. The figure grows with the number of experts and tasks, and expert labels are slanted (more than 4)
    or upright (more than 12), so 8, 16 or 32 experts stay readable; values are written in the cells up to 400
    cells, smaller past 12 experts.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    n_tasks, n_exp = len(result.tasks), len(result.experts)
    rotation = 0 if n_exp <= 4 else 45 if n_exp <= 12 else 90
    longest_expert = max((len(e) for e in result.experts), default=1)
    longest_task = max((len(t) for t in result.tasks), default=1)
    cell = 0.5 if n_exp <= 12 else 0.38  # inches per expert column (fits "0.00" at the font size used)
    panel = max(3.0, cell * n_exp + 1.3)  # heatmap + colour bar
    label_height = 0.075 * longest_expert * (0.0 if rotation == 0 else 0.72 if rotation == 45 else 1.0)
    width = 2 * panel + 0.075 * longest_task + 0.5
    height = 1.8 + 0.45 * n_tasks + label_height
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    annotate = n_tasks * n_exp <= 400
    fontsize = 7 if n_exp <= 12 else 6
    uniform = 1.0 / n_exp if n_exp else None
    for ax, which, title in zip(axes, ("mean_weight", "top1_share"), ("mean gate weight", "top-1 share")):
        values = getattr(result, which)
        finite = [v for row in values for v in row if not math.isnan(v)]
        top = max(1.0, max(finite, default=1.0))
        norm = PowerNorm(0.5, vmin=0.0, vmax=top)
        image = ax.imshow(values, cmap="viridis", norm=norm, aspect="auto")
        ax.set_xticks(range(n_exp), result.experts, rotation=rotation, fontsize=8,
                      ha="right" if rotation == 45 else "center", rotation_mode="anchor" if rotation == 45 else None)
        ax.set_yticks(range(n_tasks), result.tasks)
        ax.set_xlabel("expert")
        ax.set_title(title)
        if annotate:
            for i, row in enumerate(values):
                for j, v in enumerate(row):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=fontsize,
                            color="white" if norm(v) < 0.6 else "black")
        bar = fig.colorbar(image, ax=ax, shrink=0.8)
        if uniform is not None:
            bar.ax.axhline(uniform, color="#ff5a36", lw=2, ls="--", gid="chance")
            bar.ax.set_ylabel(f"dashed: uniform routing (1/{n_exp} = {uniform:.2f})", fontsize=7)
    axes[1].tick_params(labelleft=False)
    axes[0].set_ylabel("task")
    fig.suptitle(f"{result.method}: routing per task ({result.meta.get('split', '')} split)")
    return fig


def write_heatmap(result: RouterAnalysis, path: str | os.PathLike[str]) -> None:
    """`heatmap_figure` as a PNG, written atomically."""
    fig = heatmap_figure(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


__all__ = ["FILES", "RouterAnalysis", "analyze_router", "expert_labels", "heatmap_figure", "router_statistics",
           "sequences", "write_heatmap", "write_router_analysis"]
