"""Helpers shared by the benchmark scripts: thread choice, paired-ratio statistics, peak memory, JSON output.

Not a public module: the scripts import it as a sibling (`python benchmarks/<script>.py` puts this folder on
`sys.path`).

Peak memory, one definition for every script (the JSON records which one was used):

* CUDA: `torch.cuda.max_memory_allocated()` during the measured region minus what was allocated just before it.
* CPU: the process's peak RSS during the region minus its RSS just before it. Linux lets a process reset its
  own RSS high-water mark (write "5" to /proc/self/clear_refs; `VmHWM` then restarts from the current RSS), so
  the peak is exact, not sampled. Without that, a psutil thread samples RSS every 2 ms. RSS only follows live
  tensors if glibc gives freed memory back, so the CPU probes run in a fresh subprocess started with
  `MALLOC_MMAP_THRESHOLD_` pinned (`probe_env`): every allocation above 128 KiB is its own mapping, unmapped
  on free. (tracemalloc does not see torch's allocations, and `ru_maxrss` never goes down, so neither can
  measure one region after a model load.) The timed runs do not use that setting, so it cannot skew a time.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Self

import torch

MALLOC_MMAP_THRESHOLD = "131072"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_threads(device: str, threads: int | None) -> int:
    """`threads`, else torch's default (CPU: lowered to the cores the 1-minute load average leaves free, >= 1).

    With more OpenMP threads than free cores every parallel region waits for a descheduled thread; on the
    2-core machine these benchmarks were written on that made steps 10-70x slower."""
    if threads is None:
        default = torch.get_num_threads()
        threads = default if str(device).startswith("cuda") else max(1, min(default, round(
            (os.cpu_count() or 1) - os.getloadavg()[0])))
    torch.set_num_threads(threads)
    return threads


def ratio_stats(values: list[float]) -> dict[str, Any]:
    """Median, quartiles, min/max and the values of per-round (or per-step) paired ratios."""
    values = [float(v) for v in values]
    if not values:
        return {"median": None, "q1": None, "q3": None, "min": None, "max": None, "n": 0, "values": []}
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def paired_stats(num: list[float], den: list[float]) -> dict[str, Any]:
    return ratio_stats([a / b for a, b in zip(num, den)])


def sync(device: str | torch.device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ memory


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            match = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def apply_quick(args, parser, quick: dict) -> None:
    """`--quick`: replace each option still at its default by its smoke-run value (explicit options win)."""
    if args.quick:
        for key, value in quick.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)


class RssSampler(threading.Thread):
    """Peak resident memory of this process, sampled every `interval` seconds until `stop()`."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.interval = psutil.Process(), interval
        self.peak = self.proc.memory_info().rss
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


class PeakMemory:
    """`with PeakMemory(device) as pm: ...` then `pm.bytes` / `pm.mib` and `pm.method` (see the module doc)."""

    def __init__(self, device: str | torch.device) -> None:
        self.cuda = str(device).startswith("cuda")
        self.bytes: int | None = None
        self.method = ""
        self._sampler: RssSampler | None = None

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / 2**20

    def __enter__(self) -> Self:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated - allocated before"
            return self
        self._before = (_status_kib("VmRSS") or 0) * 1024
        if _reset_hwm() and _status_kib("VmHWM") is not None:
            self.method = "peak RSS (VmHWM reset via /proc/self/clear_refs) - RSS before"
            return self
        try:
            self._sampler = RssSampler()
            self._sampler.start()
            self.method = "peak RSS (psutil, sampled every 2 ms) - RSS before"
        except ImportError:
            self.method = "unavailable (no /proc/self/clear_refs, no psutil)"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = max(0, torch.cuda.max_memory_allocated() - self._before)
        elif self._sampler is not None:
            self.bytes = max(0, self._sampler.stop() - self._before)
        elif self.method.startswith("peak RSS (VmHWM"):
            self.bytes = max(0, (_status_kib("VmHWM") or 0) * 1024 - self._before)


def probe_env() -> dict[str, str]:
    """Environment of a CPU memory subprocess: glibc returns every allocation above 128 KiB on free."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=MALLOC_MMAP_THRESHOLD)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_probe(script: str, argv: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run `python script *argv` with `probe_env()`; its last stdout line is JSON, returned as a dict."""
    proc = subprocess.run([sys.executable, os.path.abspath(script), *argv], env=probe_env(), capture_output=True,
                          text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe {' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_json(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, default=str)
    os.replace(tmp, path)


def machine_info(device: str) -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"device": str(device), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "load_average": os.getloadavg()}
    if str(device).startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name()
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


# ------------------------------------------------------------------------------------------------ precision

# CPU features that decide matmul speed per dtype: fp32 (avx2/fma, avx512f) and bf16 (avx512_bf16, amx_*).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
             "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> dict[str, bool]:
    """Which of `CPU_FLAGS` /proc/cpuinfo lists (all False where there is no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            line = next((ln for ln in fh if ln.startswith("flags")), "")
    except OSError:
        line = ""
    present = set(line.split(":", 1)[-1].split())
    return {flag: flag in present for flag in CPU_FLAGS}


def machine_record(device: str, threads: int | None = None) -> dict[str, Any]:
    """What a results table must say about the machine: CPU model and flags, torch, threads, bf16 support.

    `benchmarks/run` stores it with each script's run (results/runs.json), so `--from-json` states the machine
    the numbers came from, not the one rebuilding the table."""
    import platform

    from loralab.utils.precision import cpu_description, native_bf16

    cpu = cpu_description()
    device_type = str(device).split(":", 1)[0]
    native, why = native_bf16(device_type, device)
    record: dict[str, Any] = {"cpu": cpu["cpu"], "arch": platform.machine(), "cpu_count": os.cpu_count(),
                              "cpu_flags": cpu_flags(), "torch_cpu_capability": cpu["capability"],
                              "torch": torch.__version__, "device": str(device), "bf16_native": native,
                              "bf16_reason": why, "threads": threads}
    if device_type == "cuda" and torch.cuda.is_available():
        record["device_name"] = torch.cuda.get_device_name()
    return record


def flags_text(flags: dict[str, bool]) -> str:
    """'avx2 yes, ..., amx_bf16 no' (the machine header and the n/a reasons)."""
    return ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in flags.items())


def bf16_status(device: str, allow_emulated: bool) -> tuple[str | None, str]:
    """("native" | "emulated" | None, reason). None: bf16 is not native here and emulation was not asked for,
    so the caller must not run it (emulated bf16 matmuls are ~100x slower than fp32: minutes per row)."""
    from loralab.utils.precision import cpu_description, native_bf16

    device_type = str(device).split(":", 1)[0]
    native, why = native_bf16(device_type, device)
    if native:
        return "native", why
    if device_type == "cpu":
        why = f"{why}; CPU {cpu_description()['cpu']}, flags: {flags_text(cpu_flags())}"
    return ("emulated" if allow_emulated else None), why


def write_not_applicable(path: str | None, reason: str, device: str, what: str) -> int:
    """Record (and print) that a bf16 measurement does not apply on this device; exit status 0 (not a failure)."""
    from loralab.utils.precision import resolve_precision

    print(f"n/a here ({what}): {reason}", flush=True)
    if path:
        write_json(path, {"status": "n/a", "reason": reason, "what": what, "device": str(device),
                          "auto_precision": resolve_precision("auto", device).to_dict(),
                          "machine": machine_record(device, torch.get_num_threads())})
    return 0
