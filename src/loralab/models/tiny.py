"""Tiny random causal LMs, one per architecture, plus a self-contained byte-level tokenizer.

They exist so that tests and smoke runs exercise the real transformers/PEFT code paths of many
architectures in well under a second each, with no download. Every model shares the same tiny
shape (hidden 64, 2 layers, 4 heads, FFN 128) and the byte tokenizer's vocabulary, so the
weights are meaningless but every tensor shape and module layout is the real one.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast

from loralab.errors import UnknownNameError
from loralab.models.loading import LoadedModel, prepare_tokenizer

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, str, str] = ("<pad>", "<bos>", "<eos>")
ALIAS_PREFIX = "tiny-"

# Shared tiny shape, in the standard config names; configs with other attribute names (n_embd,
# d_model, n_layer, ...) map these through their `attribute_map`. Extra keys that an architecture
# does not use are stored on its config and ignored.
_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 256,
}

# Per-architecture config overrides: pure data, used only where an architecture names a size
# differently or needs a small setting to stay tiny. The keys are also the list of architectures.
_OVERRIDES: dict[str, dict[str, Any]] = {
    "llama": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "mistral": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
    },
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16},
    "phi": {},
    "phi3": {},
    "gpt2": {"n_inner": 128},
    "gpt_bigcode": {"n_inner": 128},
    "gpt_neo": {"attention_types": [[["global", "local"], 1]], "window_size": 16},
    "gptj": {"n_inner": 128, "rotary_dim": 8},
    "codegen": {"n_inner": 128, "rotary_dim": 8, "n_ctx": 256},
    "opt": {"ffn_dim": 128, "word_embed_proj_dim": 64},
    "xglm": {"ffn_dim": 128},
    "gpt_neox": {},
    "falcon": {"ffn_hidden_size": 128},
    "bloom": {},
    "mpt": {"expansion_ratio": 2},
    "persimmon": {},
    "stablelm": {},
    "starcoder2": {},
    "olmo": {},
    "olmo2": {},
    "granite": {},
    "cohere": {},
    "glm": {"head_dim": 16},
    "helium": {"head_dim": 16},
    "smollm3": {},
}

TINY_ARCHITECTURES: tuple[str, ...] = tuple(_OVERRIDES)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which the ByteLevel pre-tokenizer emits."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


@functools.cache
def _byte_tokenizer_json() -> str:
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    byte_chars = _bytes_to_unicode()
    for byte in range(256):
        vocab[byte_chars[byte]] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split and no prefix space: every byte of the text becomes exactly one token.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer.to_str()


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A 259-token byte-level tokenizer (<pad>, <bos>, <eos>, then the 256 bytes), built locally.

    Any unicode text round-trips through encode/decode. Like GPT-2 and SmolLM2 it adds no BOS,
    so prompts tokenize the same way for tiny and real models.
    """
    tokenizer = PreTrainedTokenizerFast(
        # A fresh backend per call: PreTrainedTokenizerFast mutates its padding/truncation state.
        tokenizer_object=Tokenizer.from_str(_byte_tokenizer_json()),
        pad_token=SPECIAL_TOKENS[0],
        bos_token=SPECIAL_TOKENS[1],
        eos_token=SPECIAL_TOKENS[2],
        model_max_length=_COMMON["max_position_embeddings"],
    )
    return prepare_tokenizer(tokenizer)


def tiny_aliases() -> dict[str, str]:
    """`tiny-<arch>` alias (hyphens for underscores) -> one-line description."""
    return {
        tiny_alias(arch): f"tiny random {arch} (2 layers, hidden 64, byte tokenizer) for tests; no download"
        for arch in TINY_ARCHITECTURES
    }


def tiny_alias(arch: str) -> str:
    return ALIAS_PREFIX + arch.replace("_", "-")


def resolve_tiny_arch(name: str) -> str:
    """Accept "gpt_neox", "gpt-neox" or "tiny-gpt-neox"; raise UnknownNameError otherwise."""
    for arch in TINY_ARCHITECTURES:
        if name in (arch, arch.replace("_", "-"), tiny_alias(arch)):
            return arch
    raise UnknownNameError("tiny architecture", name, TINY_ARCHITECTURES)


def tiny_config(arch: str) -> PretrainedConfig:
    """The transformers config of the tiny model for `arch` (name or alias)."""
    arch = resolve_tiny_arch(arch)
    ids = {
        "vocab_size": len(SPECIAL_TOKENS) + 256,
        "pad_token_id": SPECIAL_TOKENS.index("<pad>"),
        "bos_token_id": SPECIAL_TOKENS.index("<bos>"),
        "eos_token_id": SPECIAL_TOKENS.index("<eos>"),
    }
    return AutoConfig.for_model(arch, **{**_COMMON, **ids, **_OVERRIDES[arch]})


def build_tiny_model(arch: str, seed: int = 0) -> LoadedModel:
    """Build a tiny random causal LM for `arch` ("llama" or "tiny-llama") on CPU, in eval mode.

    The initialisation is seeded with `seed` inside a forked RNG, so the same seed gives the same
    weights and the caller's global RNG state is left untouched.
    """
    arch = resolve_tiny_arch(arch)
    config = tiny_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    model.generation_config.pad_token_id = config.pad_token_id
    logger.debug("built tiny %s (%d parameters, seed %d)", arch, model.num_parameters(), seed)
    return LoadedModel(
        model=model,
        tokenizer=byte_tokenizer(),
        name=tiny_alias(arch),
        source=f"random-init:{arch}:seed={seed}",
        revision=None,
    )
