"""Model loading (aliases, local directories, hub ids), tiny test models and LoRA target discovery."""

from loralab.models.loading import LoadedModel, load_model, model_aliases, prepare_tokenizer, resolve_dtype
from loralab.models.smollm2 import SMOLLM2_ALIAS, smollm2_path
from loralab.models.targets import (
    classify_linear_modules,
    classify_linear_targets,
    find_linear_modules,
    find_linear_targets,
    linear_targets_by_kind,
)
from loralab.models.tiny import TINY_ARCHITECTURES, build_tiny_model, byte_tokenizer, tiny_config

__all__ = [
    "SMOLLM2_ALIAS",
    "TINY_ARCHITECTURES",
    "LoadedModel",
    "build_tiny_model",
    "byte_tokenizer",
    "classify_linear_modules",
    "classify_linear_targets",
    "find_linear_modules",
    "find_linear_targets",
    "linear_targets_by_kind",
    "load_model",
    "model_aliases",
    "prepare_tokenizer",
    "resolve_dtype",
    "smollm2_path",
    "tiny_config",
]
