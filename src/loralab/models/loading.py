"""`load_model`: one entry point for aliases, local directories and Hugging Face hub ids.

Everything a user can get wrong here (a typo in an alias, a missing directory, pickle-only
weights, no network) becomes a one-line `ModelLoadError` / `UnknownNameError`, so the CLI can
print it without a traceback. Weights load from safetensors unless the caller explicitly allows
pickle, because unpickling a checkpoint can run arbitrary code.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from loralab.errors import ModelLoadError, UnknownNameError
from loralab.models.smollm2 import SMOLLM2_ALIAS, SMOLLM2_DESCRIPTION, smollm2_path
from loralab.utils.env import default_device

logger = logging.getLogger(__name__)

# owner/name as the hub spells it: no leading dot, exactly one slash.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model"}
_ALLOWED = "an alias (see `model_aliases()`), an existing model directory, or a hub id like 'org/name'"


IDENTITY_ATTR = "loralab_identity"


@dataclass(frozen=True)
class ModelIdentity:
    """Which base model a module is: what adapters and checkpoints record as their base model.

    Attributes:
        name: The spec it was loaded by (alias, directory as given, hub id); `LoadedModel.name`.
        source: Where it came from (resolved directory, hub id, `random-init:<arch>:seed=<n>`).
        revision: Hub commit, when known.
    """

    name: str
    source: str
    revision: str | None = None


@dataclass
class LoadedModel:
    """A causal LM ready for evaluation or LoRA training, with the tokenizer that goes with it.

    The model carries its `ModelIdentity` (attribute `loralab_identity`), so code that is handed only the
    `nn.Module` (e.g. `attach_adapter`) can compare it with the base model an adapter records.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str
    revision: str | None

    def __post_init__(self) -> None:
        if isinstance(self.model, torch.nn.Module):
            setattr(self.model, IDENTITY_ATTR, ModelIdentity(self.name, self.source, self.revision))

    @property
    def device(self) -> torch.device:
        return self.model.device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where `model`'s forwards run (its first parameter's device; the CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def is_hub_id(spec: str) -> bool:
    """`spec` is spelled like a hub repo id (`owner/name`, one slash, no leading dot, no `..`)."""
    return bool(_HUB_ID.match(spec)) and ".." not in spec


def model_identity(model: torch.nn.Module) -> ModelIdentity | None:
    """The identity `LoadedModel` stamped on `model` (None for a model loaded some other way)."""
    identity = getattr(model, IDENTITY_ATTR, None)
    return identity if isinstance(identity, ModelIdentity) else None


@dataclass(frozen=True)
class _Options:
    dtype: torch.dtype
    trust_remote_code: bool
    allow_pickle: bool
    revision: str | None
    seed: int


def model_aliases() -> dict[str, str]:
    """Alias -> one-line description: SmolLM2-135M-Instruct and every tiny random architecture."""
    from loralab.models.tiny import tiny_aliases  # tiny imports LoadedModel from this module

    return {SMOLLM2_ALIAS: SMOLLM2_DESCRIPTION, **tiny_aliases()}


def load_model(
    spec: str,
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    revision: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Load `spec` (alias, local directory or hub id) as an eval-mode causal LM on `device`.

    `device` defaults to `default_device()` and `dtype` to float32. `seed` only matters for the
    tiny random models. `allow_pickle` permits `pytorch_model.bin` weights (unsafe for untrusted
    files); `trust_remote_code` is passed through to transformers.
    """
    target = check_device(device)
    options = _Options(resolve_dtype(dtype), trust_remote_code, allow_pickle, revision, seed)
    loaded = _dispatch(spec, options)
    loaded.model.to(device=target, dtype=options.dtype)
    loaded.model.eval()
    prepare_tokenizer(loaded.tokenizer)
    generation_config = getattr(loaded.model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = loaded.tokenizer.pad_token_id
    logger.info("loaded %s from %s on %s (%s)", loaded.name, loaded.source, target, options.dtype)
    return loaded


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """None -> float32; accepts a torch.dtype or a name like "bf16", "float16", "torch.float32"."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UnknownNameError("dtype", str(dtype), _DTYPES)
    return _DTYPES[key]


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make batching work the same for every model: a pad token (EOS if none) and right padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def available_devices() -> list[str]:
    """The devices a model can be put on here: cpu, each CUDA device, mps when torch has it."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


_DEVICE = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def check_device(device: str | None, option: str = "device") -> torch.device:
    """`device` (default: the best available) as a torch device that exists here; else one `ModelLoadError`.

    Checked before any work, so `--device cuda:7` on a one-GPU machine (or `cuda` on a CPU-only one) fails
    at once instead of after the data and model have loaded, or with a torch traceback at `.to(device)`.
    """
    if device is None:
        return torch.device(default_device())
    name = str(device).strip()
    available = available_devices()
    shown = ", ".join(available)
    match = _DEVICE.match(name)
    if match is None:
        raise ModelLoadError(f"{option} {name!r} is not a device: expected cpu, cuda, cuda:N or mps; "
                             f"available here: {shown}", param=option)
    kind, index = match[1], match[2]
    if kind == "cpu":
        if index not in (None, "0"):
            raise ModelLoadError(f"{option} {name!r} does not exist; available here: {shown}", param=option)
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"{option} {name!r}: CUDA is not available here; available here: {shown}",
                                 param=option)
        if index is not None and int(index) >= torch.cuda.device_count():
            raise ModelLoadError(f"{option} {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) "
                                 f"here; available here: {shown}", param=option)
        return torch.device(name)
    if "mps" not in available or index not in (None, "0"):
        raise ModelLoadError(f"{option} {name!r}: MPS is not available here; available here: {shown}", param=option)
    return torch.device("mps")


def _dispatch(spec: str, options: _Options) -> LoadedModel:
    """Alias first, then an existing directory, then a hub id; anything else is a one-line error."""
    if spec in model_aliases():
        return _load_alias(spec, options)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_local(path, spec, options)
    if path.exists():
        raise ModelLoadError(f"model {spec!r} is a file, not a model directory; expected {_ALLOWED}")
    if is_hub_id(spec):
        return _load_hub(spec, options)
    if "/" in spec or "\\" in spec or spec.startswith(("~", ".")):
        raise ModelLoadError(f"no such model directory {spec!r}; expected {_ALLOWED}")
    error = UnknownNameError("model", spec, model_aliases())
    error.args = (f"{error.args[0]}; or give an existing model directory or a hub id like 'org/name'",)
    raise error


def _load_alias(spec: str, options: _Options) -> LoadedModel:
    if options.revision is not None:
        logger.warning("revision %r ignored for built-in alias %r", options.revision, spec)
    if spec == SMOLLM2_ALIAS:
        # Our own conversion is always safetensors; never widen that to pickle.
        return _load_local(smollm2_path(), spec, replace(options, allow_pickle=False, revision=None))
    from loralab.models.tiny import build_tiny_model

    return build_tiny_model(spec, seed=options.seed)


def _load_local(path: Path, name: str, options: _Options) -> LoadedModel:
    _check_model_dir(path, options.allow_pickle)
    if options.revision is not None:
        logger.warning("revision %r ignored for local directory %s", options.revision, path)
    model, tokenizer = _from_pretrained(str(path), replace(options, revision=None))
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, source=str(path.resolve()), revision=None)


def _load_hub(repo_id: str, options: _Options) -> LoadedModel:
    logger.info("loading %s from the Hugging Face hub (revision %s)", repo_id, options.revision or "main")
    model, tokenizer = _from_pretrained(repo_id, options)
    commit = getattr(model.config, "_commit_hash", None)
    return LoadedModel(model=model, tokenizer=tokenizer, name=repo_id, source=repo_id, revision=commit)


def _check_model_dir(path: Path, allow_pickle: bool) -> None:
    """Fail before transformers does, with a message that says what to do."""
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{str(path)!r} is not a model directory: it has no config.json")
    names = [p.name for p in path.iterdir()]
    if not set(names) & _TOKENIZER_FILES:
        raise ModelLoadError(
            f"no tokenizer in {str(path)!r} (tokenizer.json / tokenizer_config.json); save the tokenizer there too"
        )
    if any(n.endswith((".safetensors", ".safetensors.index.json")) for n in names):
        return
    has_pickle = any(n.startswith("pytorch_model") and n.endswith((".bin", ".bin.index.json")) for n in names)
    if not has_pickle:
        raise ModelLoadError(f"no model weights (*.safetensors) in {str(path)!r}")
    if not allow_pickle:
        raise ModelLoadError(
            f"{str(path)!r} has only pickle weights (pytorch_model.bin), which can run code when loaded; "
            "pass allow_pickle=True (--allow-pickle) if you trust it"
        )


def _from_pretrained(source: str, options: _Options) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    common = {"trust_remote_code": options.trust_remote_code, "revision": options.revision}
    if options.allow_pickle:
        logger.warning("allow_pickle=True: pickle weights can execute arbitrary code; use only trusted checkpoints")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=options.dtype, use_safetensors=None if options.allow_pickle else True, **common
        )
    except torch.OutOfMemoryError:
        raise  # not a property of the files
    except (OSError, ValueError, KeyError, SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        # truncated or corrupt weights end here: safetensors' header errors, and under allow_pickle a
        # malformed pickle (UnpicklingError, EOFError) or a torch zip archive that is cut short (RuntimeError)
        raise ModelLoadError(f"cannot load model {source!r}: {_one_line(exc)}{_hint(exc, options)}") from None
    return model, tokenizer


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _hint(exc: BaseException, options: _Options) -> str:
    text = str(exc)
    if "trust_remote_code" in text and not options.trust_remote_code:
        return " (pass trust_remote_code=True / --trust-remote-code if you trust this repository)"
    if ".safetensors" in text and not options.allow_pickle:
        return " (if it only has pytorch_model.bin, pass allow_pickle=True / --allow-pickle if you trust it)"
    return ""
