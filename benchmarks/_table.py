"""`benchmarks/run`'s table pieces: the row record, memory formatting, the N/A status and the machine header.

Not a public module (a sibling import of `run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The status of a bf16 row where this device has no native bf16: not measured (emulated bf16 would take minutes
# and time the emulation, not the method), not a failure.
NA_VERDICT = "N/A (no native bf16 on this device)"


@dataclass
class Row:
    target: int
    what: str
    bound: str  # "<= 1.3", ">= 1.5", or "report"
    stats: dict[str, Any] | None = None  # ratio_stats of the paired ratios
    time_note: str = ""
    memory: str = ""
    notes: list[str] = field(default_factory=list)
    correctness_ok: bool = True
    error: str | None = None
    verdict: str = ""
    margin: float | None = None
    na: str | None = None  # why this row does not apply on this device (verdict NA_VERDICT)
    measured: str | None = None  # the "measured" cell when it is not the median ratio (fraction of peak, agreement)


def fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} MiB" if x >= 10 else f"{x:.1f} MiB"


def mem_pair(ours: float | None, theirs: float | None) -> str:
    if ours is None and theirs is None:
        return "n/a"
    ratio = f" ({ours / theirs:.2f}x)" if ours is not None and theirs else ""
    return f"{fmt_mib(ours)} / {fmt_mib(theirs)}{ratio}"


def why(info: dict[str, Any] | None) -> str:
    if info is None:
        return "no JSON (script not run)"
    return f"no JSON: script exit {info['rc']}, see {info['log']}"


def not_applicable(rows: list[Row], data: dict[str, Any] | None) -> bool:
    """Mark `rows` N/A when the script reported n/a (no native bf16); True if it did."""
    if data is None or data.get("status") != "n/a":
        return False
    for row in rows:
        row.na = data["reason"]
    return True


def emulated(rows: list[Row], data: dict[str, Any], what: str = "times") -> bool:
    """A script run with --allow-emulated on a device without native bf16: its `what` are not judged (N/A)."""
    if data.get("bf16") != "emulated":
        return False
    for row in rows:
        row.na = f"bf16 emulated (--allow-emulated; {data.get('bf16_reason', '')}): {what} not judged"
    return True


# ---------------------------------------------------------------------------------------- machine header


def _machine_text(m: dict[str, Any]) -> str:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["cpu_flags"].items())
    gpu = f", {m['device_name']}" if m.get("device_name") else ""
    bf16 = "native" if m["bf16_native"] else "not native"
    return (f"{m['cpu']} ({m['arch']}, {m['cpu_count']} CPUs{gpu}); CPU flags: {flags}; torch CPU capability "
            f"{m['torch_cpu_capability']}; bf16 on {m['device']}: {bf16} ({m['bf16_reason']}). torch {m['torch']}")


def machine_header(runs: dict[str, dict[str, Any] | None], threads: dict[str, int | None]) -> str:
    """The machine the runs were made on (recorded per script in runs.json), and each script's torch threads."""
    recorded = {k: v.get("machine") for k, v in runs.items() if v}  # (a script never run has no record)
    missing = sorted(k for k, m in recorded.items() if not m)
    # The same machine for every script but the threads, which each script chooses (below).
    kinds = {}
    for key, m in recorded.items():
        if m:
            kinds.setdefault(_machine_text(m), []).append(key)
    if len(kinds) == 1:
        text = f"Machine: {next(iter(kinds))}."
    elif kinds:
        text = "Machines differ between scripts: " + " | ".join(f"{', '.join(keys)}: {t}" for t, keys in kinds.items())
        text += "."
    else:
        text = "Machine: not recorded."
    if missing and kinds:
        text += f" Not recorded for {', '.join(missing)} (run before machine records were kept)."
    elif missing:
        text += f" ({', '.join(missing)} ran before `run` recorded CPU model, flags and torch version.)"
    known = {k: t for k, t in threads.items() if t is not None}
    if known and len(set(known.values())) == 1:
        text += f" Torch threads: {next(iter(known.values()))} in every script that measured something."
    elif known:
        text += " Torch threads: " + ", ".join(f"{k} {t}" for k, t in known.items()) + "."
    return text


def script_threads(data: dict[str, Any] | None) -> int | None:
    """The torch threads a script ran with, from its JSON (`threads`, train_step's `torch_threads`); None for
    a script that reported n/a (it measured nothing) or one that left the threads to loralab."""
    if not data or data.get("status") == "n/a":
        return None
    value = data.get("threads", data.get("torch_threads"))
    return int(value) if value is not None else None
