"""Numeric precision: which autocast dtype a model runs under, decided once and recorded everywhere.

    precision = resolve_precision("auto", "cpu")      # Precision(name="fp32", reason="...") on a CPU without bf16
    with precision.autocast():
        logits = model(**batch).logits

`auto` picks bf16 autocast where the hardware multiplies bf16 natively: a CUDA device that supports it,
or a CPU with AVX512-BF16 or AMX tiles (asked of torch, which reads CPUID); fp32 otherwise. bf16 on a CPU
without them is emulated, hundreds of times slower than fp32, so `auto` never picks it there and an
explicit `bf16` warns. Autocast, not bf16 weights: parameters (and so optimizer state and anything
trained) stay fp32, and only the matmuls run in the low dtype; casting the weights themselves changes
SmolLM2's logits far more. Router softmaxes stay fp32 because the routers compute them in fp32
explicitly. fp16 needs a loss scaler to train and has no fast CPU path, so it is offered on CUDA only.

The resolved name ("fp32", "bf16", "fp16") is recorded in every result, library entry, checkpoint and
benchmark cell id, so results of different precisions never mix silently.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from loralab.errors import ConfigError

logger = logging.getLogger(__name__)

Requested = Literal["auto", "fp32", "bf16", "fp16"]
Resolved = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision.

    Attributes:
        name: "fp32" (no autocast), "bf16" or "fp16" (autocast to that dtype).
        requested: What was asked ("auto" or an explicit name).
        device_type: "cpu", "cuda", ... (autocast is per device type).
        reason: Why this was chosen (recorded with results).
    """

    name: Resolved
    requested: str
    device_type: str
    reason: str

    @property
    def dtype(self):
        """The autocast dtype, or None for fp32."""
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the block under autocast to `dtype` (nothing for fp32, so fp32 results are unchanged bit for bit)."""
        if self.name == "fp32":
            yield
            return
        import torch

        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_precision(requested: str | None = "auto", device: Any = None) -> Precision:
    """Resolve `requested` ("auto", "fp32", "bf16", "fp16"; None means "auto") for `device` (default: CPU).

    Raises:
        ConfigError: an unknown name, or fp16 on a CPU.
    """
    requested = "auto" if requested is None else requested
    if requested not in PRECISIONS:
        raise ConfigError(f"precision: {requested!r} is not one of {', '.join(PRECISIONS)}")
    device_type = _device_type(device)
    native, why = native_bf16(device_type, device)
    if requested == "auto":
        name: Resolved = "bf16" if native else "fp32"
        return Precision(name, requested, device_type, f"auto: {why}")
    if requested == "fp16" and device_type == "cpu":
        raise ConfigError("precision: 'fp16' runs on CUDA only (it needs a loss scaler to train and has no fast CPU "
                          "path); use 'bf16' or 'fp32'")
    if requested == "bf16" and not native:
        logger.warning("precision bf16 requested but %s: bf16 matmuls are emulated and much slower than fp32", why)
    return Precision(requested, requested, device_type, f"requested ({why})")  # type: ignore[arg-type]


def native_bf16(device_type: str, device: Any = None) -> tuple[bool, str]:
    """Whether `device_type` multiplies bf16 natively, and the evidence in words."""
    import torch

    if device_type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"CUDA device {torch.cuda.get_device_name(device)} supports bf16"
        return False, "this CUDA device has no native bf16"
    if device_type == "cpu":
        flags = cpu_bf16_features()
        if flags:
            return True, f"this CPU has {' and '.join(flags)}"
        return False, "this CPU has neither AVX512-BF16 nor AMX (bf16 would be emulated)"
    return False, f"no bf16 check for device type {device_type!r}"


@functools.lru_cache(maxsize=1)
def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU features that make bf16 matmuls native here (empty: none), from torch's CPUID probe."""
    import torch

    found = []
    probes = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported"))
    for label, probe in probes:
        fn = getattr(torch.cpu, probe, None)
        if callable(fn):
            if fn():
                found.append(label)
        elif label in _proc_cpuinfo_flags():  # older torch without the probe: the kernel's view of CPUID
            found.append(label)
    return tuple(found)


def cpu_description() -> dict[str, Any]:
    """CPU model, torch's capability level and the bf16 features, for benchmark records."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in _proc_cpuinfo_lines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return {"cpu": model, "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_features": list(cpu_bf16_features())}


def _device_type(device: Any) -> str:
    if device is None:
        return "cpu"
    return getattr(device, "type", None) or str(device).split(":", 1)[0]


def _proc_cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _proc_cpuinfo_flags() -> set[str]:
    line = next((line for line in _proc_cpuinfo_lines() if line.startswith("flags")), "")
    flags = set(line.split(":", 1)[-1].split())
    return {"amx" if f.startswith("amx_") else f for f in flags}
