"""The method plug-in surface: `MethodSpec` (what a method is and how the runner treats it), `TrainRequest`
(what a custom training function gets), and the registry (one line per method, a loud error on a clash,
"did you mean" on a typo).

Adding a method is one file under `loralab/moe/methods/` (or anywhere, for a user's own method) that ends
with `register_method(MethodSpec(...))`; nothing else in loralab names it. What the benchmark runner must
know about a method (whether it trains, takes library experts, uses the target's own LoRA) is declared
here, not decided by comparing names; so are the small settings the method contract suite runs it with
(`MethodContract`), so a new method is tested without an entry in a table elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loralab.utils.precision import Precision, resolve_precision
from loralab.utils.registry import Registry

if TYPE_CHECKING:
    import torch

    from loralab.data import Task
    from loralab.models import LoadedModel
    from loralab.moe.config import MethodConfig
    from loralab.moe.experts import LibraryLoRA
    from loralab.moe.model import MoEModel
    from loralab.training.hparams import LoRAHparams


@dataclass
class TrainRequest:
    """Everything a method's custom `train` function gets (see `MethodSpec.train`).

    Attributes:
        method: The registry name.
        lm: The base model and tokenizer; the function may wrap `lm.model` but must leave it unwrapped.
        tasks: The training tasks (several: multi-task training, task ids in list order).
        out: The checkpoint folder to write (atomically).
        config: The method's config (an instance of `MethodSpec.config_cls`).
        hparams: The shared training hyperparameters.
        library: The LoRA library the experts come from (None without experts).
        experts: The library tasks whose LoRAs are the experts (None: from scratch).
        loras: Those LoRAs, loaded and hash-checked, in `experts` order.
        progress: Show a progress bar.
        precision: The resolved precision: run every forward under `precision.autocast()` (parameters stay
            fp32) and record `precision.to_dict()` in the checkpoint's info as "precision".
        resume: What to do with checkpoints in the work folder beside `out`: pass it to `train_adapter`
            (None: resume a matching one; True: resume, refusing one of other settings; False: start over).
    """

    method: str
    lm: LoadedModel
    tasks: list[Task]
    out: Path
    config: MethodConfig
    hparams: LoRAHparams
    library: Path | None
    experts: list[str] | None
    loras: list[LibraryLoRA] | None
    progress: bool
    precision: Precision = field(default_factory=lambda: resolve_precision("fp32"))
    resume: bool | None = None


@dataclass(frozen=True)
class MethodContract:
    """How the method contract suite (tests/moe/test_moe_contract.py) runs a method on tiny models.

    The suite checks, on several architectures: a save/load round trip gives identical logits; gradients
    reach exactly the `trained` parameters; `unload()` gives back the untouched base model; a mergeable
    method gives the same logits merged and unmerged for every task (others refuse to merge); and, for a
    method that takes library LoRAs, one library expert with gate 1 equals that plain PEFT LoRA.

    Attributes:
        config: Config overrides for tiny models (small sizes; all linears where the method allows, so the
            comparison with PEFT covers every module); empty: the config class's defaults.
        trained: Regex (searched in `MoEModel` parameter names) of what the method trains; nothing else
            may be trainable or get gradient.
        one_expert: Config overrides that make one library expert with gate 1 (e.g. top_k=1); None: that
            check does not apply (it never does for `library="none"` methods).
    """

    config: Mapping[str, Any] = field(default_factory=dict)
    trained: str = r"\.lora_[AB]$"
    one_expert: Mapping[str, Any] | None = field(default_factory=dict)


BuildFn = Callable[["torch.nn.Module", "MethodConfig", "list[LibraryLoRA] | None", "list[str]"], "MoEModel"]
TrainFn = Callable[[TrainRequest], dict[str, Any]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: Registry key (lowercase).
        config_cls: Its config dataclass (paper defaults).
        build: `build(model, config, experts, tasks) -> MoEModel`; `experts` are library LoRAs or None.
        description: One line for `loralab methods ls`.
        library: "required" (experts come from --library/--experts), "optional" (may initialise from them),
            or "none" (trains from scratch; giving experts is an error).
        mergeable: Whether a per-task merge into the base weights exists.
        paper: Link to the paper.
        faithful: False when the implementation knowingly departs from the paper (see its docstring).
        train: A custom training function `train(request) -> info dict` that writes the checkpoint itself
            (gradient-free LoraHub, PEFT-format baselines); None: the shared Trainer path.
        trains: False for a reference that trains nothing (the base model): one evaluation serves every seed.
        uses_seed: False when, given its experts, nothing depends on the cell's seed (a linear or TIES merge:
            no gradient step, no random draw), so a deterministic expert choice needs one cell for all seeds.
        uses_own_lora: The target task's own library LoRA (the `lora` reference): it takes no experts, and
            when the library has the target's LoRA it is copied, not trained, so it is seed-free too.
        contract: The settings the method contract suite runs it with; None only for a method with its own
            `train` that writes no trainable `MoEModel` (PEFT-format baselines, `base`), tested in its own file.
    """

    name: str
    config_cls: type[MethodConfig]
    build: BuildFn
    description: str
    library: Literal["required", "optional", "none"]
    mergeable: bool
    paper: str
    faithful: bool = True
    train: TrainFn | None = None
    trains: bool = True
    uses_seed: bool = True
    uses_own_lora: bool = False
    contract: MethodContract | None = field(default_factory=MethodContract, compare=False)

    def takes_experts(self, from_scratch: bool = False) -> bool:
        """Whether this method is given library LoRAs as experts (so expert selection matters for it)."""
        return self.library == "required" or (self.library == "optional" and not self.uses_own_lora
                                              and not from_scratch)

    def seed_free(self, target_in_library: bool) -> bool:
        """Whether its result cannot depend on a training seed: nothing is trained, or the own LoRA is copied."""
        return not self.trains or (self.uses_own_lora and target_in_library)


METHODS: Registry[MethodSpec] = Registry("method", builtins="loralab.moe.methods")


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register `spec` under `spec.name`; a second method of the same name is an error (not an overwrite)."""
    return METHODS.register(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    return METHODS.get(name)


def all_methods() -> dict[str, MethodSpec]:
    return METHODS.items()
