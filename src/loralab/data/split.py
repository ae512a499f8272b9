"""Deterministic train/validation/test split for sources that have none (BIG-bench, GSM8K, plain files).

An example's split depends only on its own content, never on file order or on the other examples:
its id is the SHA-256 of a canonical JSON of its content (unless the source gives an id), and the
split is read off a second hash of that id:

    u = int(sha256("loralab-split-v1:" + id)[:16], 16) / 2**64
    train if u < 0.7, validation if u < 0.8, else test

So re-reading or reordering a file never moves an example, adding examples never moves the others,
and identical examples (same content) share one id and are kept once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
_SALT = "loralab-split-v1:"


def content_id(content: Any) -> str:
    """A 16-hex-digit id from the canonical JSON of `content` (key order does not matter)."""
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a lone surrogate (from a JSON escape) must not crash hashing; validation rejects it later.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def assign_split(example_id: str) -> str:
    u = int(hashlib.sha256((_SALT + example_id).encode("utf-8", "surrogatepass")).hexdigest()[:16], 16) / 2**64
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["validation"]:
        return "validation"
    return "test"
