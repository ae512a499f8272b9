"""Where loralab keeps downloads and converted models: $LORALAB_CACHE, else ~/.cache/loralab."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("LORALAB_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "loralab"
    path.mkdir(parents=True, exist_ok=True)
    return path
