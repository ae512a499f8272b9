"""lm-evaluation-harness model type `loralab`: any loralab model spec, plus a PEFT adapter or a method checkpoint.

From Python, importing this module registers the model type:

    import lm_eval
    import loralab.recipes.lmeval  # noqa: F401  (registers model="loralab")

    results = lm_eval.simple_evaluate(
        model="loralab",
        model_args="pretrained=smollm2-135m,adapter=runs/loramoe,task=social_iqa",
        tasks=["arc_easy"], batch_size=8)

From the command line, lm-eval 0.4 has no plugin discovery for model types (its registry only knows
the modules it ships), so this module wraps lm-eval's own command line after registering:

    python -m loralab.recipes.lmeval --model loralab --model_args pretrained=smollm2-135m,adapter=runs/loramoe \\
        --tasks arc_easy --batch_size 8

Everything after `python -m loralab.recipes.lmeval` is lm-eval's (`run`, `ls tasks`, `--include_path`, ...).

model_args:
    pretrained: A loralab model spec: alias (`loralab models ls`), local directory or hub id.
    adapter: A PEFT adapter directory or a loralab method checkpoint (`loralab train --out`); `peft=` is
        accepted as a synonym.
    task: For methods that route by task: the training task whose routing to use (the checkpoint's
        `tasks`). A checkpoint trained on a single task routes by it without being told.
    dtype, device, revision, allow_pickle, trust_remote_code: passed to `loralab.models.load_model`
        (`dtype=auto` means loralab's default, float32; a CUDA device that is not there falls back to
        the best available one, as lm-eval's `hf` model does).
    precision: The autocast of every forward, as loralab's `--precision` (`fp32`, `auto`, `bf16`, `fp16`;
        recorded as `loralab_precision` in lm-eval's model info; applied as HFLM's `mixed_precision_dtype`,
        its own autocast, so the weights stay fp32). The default is `fp32`, not `auto`, so that on
        any hardware the scores are exactly `loralab eval --precision fp32`'s (the parity tests): `auto`
        would switch to bf16 on a bf16-capable GPU. HFLM's own `mixed_precision_dtype=` is refused (use this).
    Everything else (batch_size, max_length, add_bos_token, ...) goes to lm-eval's HFLM unchanged.

Scoring is HFLM's, on the wrapped model object: `acc` on the same prompts equals `loralab eval`'s.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from typing import Any

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as exc:  # pragma: no cover - depends on the environment
    from loralab.utils.extras import missing_extra

    raise ImportError(str(missing_extra("lm_eval", "loralab.recipes.lmeval"))) from exc

from loralab.errors import UserInputError

logger = logging.getLogger(__name__)
MODEL_TYPE = "loralab"


def task_yaml(name: str, data_file: str | os.PathLike[str], *, kind: str = "multiple_choice",
              max_gen_toks: int = 256) -> str:
    """An lm-eval task config that reads a loralab export (`loralab data export`, `export_task`) as it is.

    The export's `prompt` is the exact scored string, so lm-eval sees the same prompts as `loralab eval`:
    multiple choice scores `choices` with no delimiter and `answer_index` as the target (metric `acc`);
    generation decodes greedily until a newline and compares with the first target (`exact_match`).
    Write it as `<dir>/<name>.yaml` and pass `include_path=<dir>` to lm-eval's TaskManager.
    """
    if kind == "multiple_choice":
        target = 'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer_index}}"\ntarget_delimiter: ""\n'
        output_type, metric = "multiple_choice", "acc"
    elif kind == "generation":
        target = ('doc_to_target: "{{targets[0]}}"\ngeneration_kwargs:\n  until: ["\\n"]\n'
                  f"  max_gen_toks: {max_gen_toks}\n  do_sample: false\n")
        output_type, metric = "generate_until", "exact_match"
    else:
        raise UserInputError(f"kind must be 'multiple_choice' or 'generation', got {kind!r}")
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {os.fspath(data_file)}\n"
            f"test_split: test\noutput_type: {output_type}\ndoc_to_text: \"{{{{prompt}}}}\"\n{target}"
            f"metric_list:\n  - metric: {metric}\n")


def _register(cls):
    # `python -m loralab.recipes.lmeval` runs this file as `__main__` first; the class lm-eval gets is the one of
    # the importable module `loralab.recipes.lmeval` (imported by the `__main__` block), registered exactly once.
    if __name__ == "__main__":
        return cls
    return register_model(MODEL_TYPE)(cls)


@_register
class LoralabLM(HFLM):
    """lm-eval's HFLM around a model loaded by loralab, optionally with a PEFT adapter or a method checkpoint.

    Args:
        pretrained: loralab model spec (alias, directory or hub id), or an already loaded `LoadedModel`.
        adapter: PEFT adapter directory or loralab method checkpoint.
        task: Training task whose routing a task-routed method uses (see `MoEModel.routing`).
        device: Where to load the model (default: best available).
        dtype: Weights dtype ("auto"/None: float32).
        revision: Hub revision of `pretrained`.
        allow_pickle: Allow pickle weights (.bin). Only for files you trust.
        trust_remote_code: Run model code from the hub. Only for repos you trust.
        peft: Synonym of `adapter` (lm-eval's `hf` name for it).
        precision: Autocast of the forwards ("fp32", the default: no autocast; "auto", "bf16", "fp16").
        **kwargs: HFLM arguments (batch_size, max_length, ...).
    """

    def __init__(self, pretrained: Any, adapter: str | None = None, task: str | int | None = None,
                 device: str | None = None, dtype: Any = None, revision: str | None = None,
                 allow_pickle: bool = False, trust_remote_code: bool = False, peft: str | None = None,
                 precision: str = "fp32", **kwargs: Any) -> None:
        from loralab.models import LoadedModel, load_model
        from loralab.models.loading import check_device, model_device
        from loralab.utils.precision import resolve_precision

        if peft is not None and adapter is not None and str(peft) != str(adapter):
            raise UserInputError("give the adapter once: adapter= (or its synonym peft=), not both")
        if kwargs.get("mixed_precision_dtype") is not None:  # one setting, so what is recorded is what ran
            raise UserInputError(f"model_args mixed_precision_dtype= is HFLM's; model type {MODEL_TYPE!r} takes "
                                 "precision=auto|fp32|bf16|fp16 instead (recorded as loralab_precision)")
        adapter = adapter if adapter is not None else peft
        for unsupported in ("delta", "parallelize", "tp_plan", "autogptq", "gptqmodel", "gguf_file"):
            if kwargs.get(unsupported):
                raise UserInputError(f"model_args {unsupported}= is not supported by model type {MODEL_TYPE!r}; "
                                     "use --model hf for it")
        device = _available_device(device)
        # a precision name the device cannot run fails before the model loads
        self.precision = resolve_precision(precision, model_device(pretrained.model) if isinstance(
            pretrained, LoadedModel) else check_device(device))
        if isinstance(pretrained, LoadedModel):
            lm = pretrained
        elif isinstance(pretrained, str):
            lm = load_model(pretrained, device=device, dtype=None if dtype == "auto" else dtype,
                            revision=None if revision in (None, "main") else str(revision),
                            allow_pickle=_flag(allow_pickle), trust_remote_code=_flag(trust_remote_code))
        else:
            raise UserInputError("pretrained= must be a loralab model spec or a LoadedModel, "
                                 f"got {type(pretrained).__name__}")
        net = lm.model
        if adapter is not None:
            from loralab.moe.adapters import attach_adapter

            net = attach_adapter(net, str(adapter), allow_pickle=_flag(allow_pickle))
        if self.precision.dtype is not None:
            # HFLM autocasts its forwards itself (and disables any autocast around them when it has no dtype)
            if "mixed_precision_dtype" not in inspect.signature(HFLM.__init__).parameters:
                raise UserInputError(f"precision={precision} needs an lm-eval whose HFLM takes mixed_precision_dtype "
                                     "(pip install -U lm-eval); this one runs fp32 only")
            kwargs["mixed_precision_dtype"] = self.precision.dtype
        self.routing_task = _set_routing(net, task)
        self.loralab_model, self.loralab_adapter = lm, None if adapter is None else str(adapter)
        with _quiet_object_warnings():
            super().__init__(pretrained=net, tokenizer=lm.tokenizer, **kwargs)
        self.pretrained = lm.name  # HFLM keeps the object otherwise; the name is what results should show

    def get_model_info(self) -> dict:
        """Model provenance for lm-eval's results (no hub queries: aliases and directories are not hub ids)."""
        net = self._model
        info = {
            "model_num_parameters": sum(p.numel() for p in net.parameters()),
            "model_dtype": str(next(net.parameters()).dtype),
            "model_revision": self.loralab_model.revision or "",
            "model_sha": self.loralab_model.revision or "",
            "loralab_model": self.loralab_model.name,
            "loralab_model_source": self.loralab_model.source,
            "loralab_adapter": self.loralab_adapter,
            "loralab_precision": self.precision.name,
        }
        method = getattr(net, "method", None)
        if method is not None:
            info.update(loralab_method=method, loralab_routing_task=self.routing_task)
        return info


class _DropObjectWarnings(logging.Filter):
    """HFLM warns that a model object means "many other model arguments may be ignored"; here loralab has
    already applied device, dtype and adapter, and refuses the arguments that would be ignored."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "not of type `str`" not in message and "already-initialized model" not in message


@contextlib.contextmanager
def _quiet_object_warnings():
    hf_logger = logging.getLogger("lm_eval.models.huggingface")
    quiet = _DropObjectWarnings()
    hf_logger.addFilter(quiet)
    try:
        yield
    finally:
        hf_logger.removeFilter(quiet)


def _flag(value: Any) -> bool:
    """model_args values arrive as strings from some callers ("True", "false")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _available_device(device: str | None) -> str | None:
    """lm-eval's CLI defaults to cuda:0 even without a GPU; fall back to the best available device then."""
    import torch

    if device and str(device).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("device %s requested but CUDA is not available; using the best available device", device)
        return None
    return device


def _set_routing(net, task: str | int | None) -> str | None:
    """Fix the routing of a method checkpoint for the whole evaluation: default task, no router records."""
    from loralab.moe.model import MoEModel

    if not isinstance(net, MoEModel):
        if task is not None:
            raise UserInputError("task= only applies to loralab method checkpoints (adapter=<loralab train --out>)")
        return None
    state = net.state
    state.record = False  # lm-eval runs thousands of forwards; nothing reads the records here
    if task is None and len(net.tasks) == 1:
        task = net.tasks[0]
    if task is not None:
        if isinstance(task, str) and task.isdigit() and task not in net.tasks:
            task = int(task)
        state.default_task_id = net.task_id(task)
        return net.tasks[state.default_task_id] if net.tasks else str(task)
    if net.tasks and _routes_by_task(net):
        raise UserInputError(f"this {net.method} checkpoint routes by task: add task=<one of {', '.join(net.tasks)}> "
                             "to model_args")
    return None


def _routes_by_task(net) -> bool:
    """Whether a forward without task ids fails for want of a default task (probed with one token)."""
    import torch

    from loralab.errors import TaskRoutingError

    try:
        with torch.inference_mode():
            net(input_ids=torch.zeros((1, 1), dtype=torch.long, device=next(net.parameters()).device))
    except TaskRoutingError:
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with the `loralab` model type registered (`python -m loralab.recipes.lmeval ...`)."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


__all__ = ["MODEL_TYPE", "LoralabLM", "main"]


if __name__ == "__main__":
    from loralab.recipes.lmeval import main as _main  # importing the module registers the model type

    _main()
