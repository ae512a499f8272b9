"""Fault injection: `loralab library build` killed with SIGKILL at several points, then re-run to completion,
gives the same library as an uninterrupted build (same seed), with no temporary or half-written folder left.

Each run is a real `loralab` process. Four kill points in a row on one library:

1. right after the first adapter is published (before the manifest is refreshed);
2. inside the second adapter's training, after HF Trainer wrote checkpoint-4 but before it was marked complete;
3. from outside, as soon as the second adapter's checkpoint-6 is complete (polling the work dir; training is
   slowed to 0.3 s per step in this run so the kill lands mid-training);
4. after the third adapter's folder is fully written but before it is renamed into place.

Between runs the library must only ever list complete adapters whose hashes verify.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loralab.library import Library
from loralab.training.trainer import CHECKPOINT_STATE

TASKS = ("alpha", "beta", "gamma")
VOLATILE = {"created", "seconds", "train_seconds", "path"}  # wall-clock fields; everything else must be equal

CHILD = r'''
import os, signal, sys, time

point = os.environ.get("LORALAB_KILL_POINT", "")

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "after_first_adapter":
    from loralab.library.store import Library
    Library.refresh_manifest = lambda self: die()
elif point == "checkpoint_unmarked":
    import transformers
    real_save = transformers.Trainer._save_checkpoint
    def save(self, model, trial):
        real_save(self, model, trial)
        if self.state.global_step == 4 and self.args.output_dir.endswith("beta"):
            die()  # HF's files are all there, loralab's completion record is not
    transformers.Trainer._save_checkpoint = save
elif point == "slow":
    from loralab.training.trainer import AnswerOnlyTrainer
    real_end = AnswerOnlyTrainer.end_step
    def end_step(self, step):
        real_end(self, step)
        time.sleep(0.3)
    AnswerOnlyTrainer.end_step = end_step
elif point == "entry_written":
    from loralab.library.store import Library
    real_write = Library.write_entry
    def write_entry(self, adapter_dir, entry):
        real_write(self, adapter_dir, entry)
        if entry.task == "gamma":
            die()  # the temporary folder is complete, not yet renamed
    Library.write_entry = write_entry

from loralab.cli import main
sys.argv = ["loralab", *sys.argv[1:]]
main()
'''


def write_inputs(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hp.yaml").write_text("rank: 4\nbatch_size: 4\nlearning_rate: 0.01\ndropout: 0.1\ncheckpoint_steps: 2\n"
                                  "max_steps: 8\n", encoding="utf-8")
    (root / "child.py").write_text(CHILD, encoding="utf-8")
    paths = []
    for t, name in enumerate(TASKS):
        lines = [json.dumps({"id": f"{name}{i}", "prompt": f"Q: {name} {i} plus {t}?\nA:",
                             "choices": [f" {i + t}", f" {i + t + 1}"], "answer_index": i % 2}) for i in range(24)]
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(str(root / f"{name}.jsonl"))
    return paths


def command(root: Path, lib: Path, tasks: list[str]) -> list[str]:
    return [sys.executable, str(root / "child.py"), "--threads", "1", "library", "build", "--model", "tiny-llama",
            "--tasks", ",".join(tasks), "--out", str(lib), "--config", str(root / "hp.yaml"), "--eval-limit", "3"]


def env(point: str = "") -> dict[str, str]:
    return {**os.environ, "LORALAB_KILL_POINT": point, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_to_end(cmd: list[str], point: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env(point), capture_output=True, text=True, timeout=600)


def kill_when(cmd: list[str], ready: Path, point: str) -> None:
    """Start the build and SIGKILL it from outside as soon as `ready` exists."""
    proc = subprocess.Popen(cmd, env=env(point), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    try:
        while not ready.exists():
            assert proc.poll() is None, f"the build ended before {ready} appeared: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"{ready} never appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def listed(lib: Path) -> list[str]:
    """The adapters the library lists; each must verify (complete, hashes match)."""
    store = Library(lib)
    entries = store.entries()
    for entry in entries:
        store.verify(entry)
    return [e.task for e in entries]


def leftovers(lib: Path) -> list[str]:
    return sorted(str(p.relative_to(lib)) for p in lib.rglob("*") if p.name.startswith("."))


def comparable(entry: dict) -> dict:
    out = {k: v for k, v in entry.items() if k not in VOLATILE}
    out["metrics"] = {k: v for k, v in entry["metrics"].items() if k not in VOLATILE}
    return out


@pytest.mark.slow
def test_killed_library_build_resumes_to_the_uninterrupted_result(tmp_path):
    tasks = write_inputs(tmp_path)
    reference = tmp_path / "reference"
    proc = run_to_end(command(tmp_path, reference, tasks))
    assert proc.returncode == 0, proc.stderr

    lib = tmp_path / "lib"
    cmd = command(tmp_path, lib, tasks)
    work = lib / ".work" / "tiny-llama"

    # 1. after the first adapter is complete
    assert run_to_end(cmd, "after_first_adapter").returncode == -signal.SIGKILL
    assert listed(lib) == ["alpha"]
    assert not (work / "alpha").exists()

    # 2. while saving the second adapter's checkpoint-4: files written, completion record not
    assert run_to_end(cmd, "checkpoint_unmarked").returncode == -signal.SIGKILL
    assert (work / "beta" / "checkpoint-2" / CHECKPOINT_STATE).is_file()
    unmarked = work / "beta" / "checkpoint-4"
    assert unmarked.is_dir() and not (unmarked / CHECKPOINT_STATE).exists()
    assert listed(lib) == ["alpha"]

    # 3. from outside, in the middle of training the second adapter again (resumed from checkpoint-2)
    kill_when(cmd, work / "beta" / "checkpoint-6" / CHECKPOINT_STATE, "slow")
    assert listed(lib) == ["alpha"]

    # 4. the third adapter fully written into its temporary folder, not yet renamed
    assert run_to_end(cmd, "entry_written").returncode == -signal.SIGKILL
    assert listed(lib) == ["alpha", "beta"]  # the complete-looking temporary gamma is not listed
    assert any(name.startswith("tiny-llama/.gamma.") for name in leftovers(lib))

    # the re-run completes the job
    proc = run_to_end(cmd)
    assert proc.returncode == 0, proc.stderr
    assert listed(lib) == list(TASKS)
    assert leftovers(lib) == []  # no temporary folder, no .work, no half-written file
    assert sorted(p.name for p in (lib / "tiny-llama").iterdir()) == sorted(TASKS)

    ours = json.loads((lib / "manifest.json").read_text())
    theirs = json.loads((reference / "manifest.json").read_text())
    assert [a["path"] for a in ours["adapters"]] == [a["path"] for a in theirs["adapters"]]
    for got, want in zip(ours["adapters"], theirs["adapters"], strict=True):
        got_c, want_c = comparable(got), comparable(want)
        assert got_c["metrics"].pop("train_loss") == pytest.approx(want_c["metrics"].pop("train_loss"), rel=1e-9)
        assert got_c == want_c, got["task"]
        mine = load_file(str(lib / got["path"] / "adapter_model.safetensors"))
        ref = load_file(str(reference / want["path"] / "adapter_model.safetensors"))
        assert set(mine) == set(ref)
        for name in ref:
            torch.testing.assert_close(mine[name], ref[name], msg=f"{got['task']}: {name}")
