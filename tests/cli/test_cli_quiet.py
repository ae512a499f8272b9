"""Quiet by default: the libraries' known deprecation warnings and weight-loading progress bars only with -v, one
line per output written, and -q leaves errors and the final result only.

The first test runs `loralab` in a subprocess (default, then -v): in-process, pytest records warnings instead of
printing them, and what the user sees is the real stderr. The others run in-process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from helpers import run_cli
from loralab.models import build_tiny_model

SRC = Path(__file__).resolve().parents[2] / "src"
WEIGHTS_BAR = "Loading weights"
DEPRECATION = "FutureWarning: `is_gradient_checkpointing` is deprecated"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model saved as a plain transformers folder, so that loading it runs transformers' weight loading."""
    lm = build_tiny_model("llama", seed=0)
    folder = tmp_path_factory.mktemp("model") / "tiny-llama"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("task") / "t.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2, "split": "test" if i % 3 == 0 else "train"}) + "\n"
                            for i in range(12)), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def restore_process_settings():
    """-q/-v set the root log level, transformers' verbosity and loralab's progress bars for the process."""
    from transformers.utils import logging as hf_logging

    from loralab.utils import progress

    from loralab.cli import noise

    level, hf_level, bars = logging.getLogger().level, hf_logging.get_verbosity(), progress._enabled
    yield
    noise.apply("normal")  # removes the TRANSFORMERS_VERBOSITY that -q sets
    logging.getLogger().setLevel(level)
    hf_logging.set_verbosity(hf_level)
    progress.enable_progress_bars(bars)


def loralab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "loralab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def build_args(model_dir: Path, task_file: Path, out: Path) -> list[str]:
    # loads weights through transformers (a saved folder) and wraps the model with PEFT (the deprecation warning)
    return ["library", "build", "--model", str(model_dir), "--tasks", str(task_file), "--out", str(out),
            "--max-steps", "1", "--limit", "2", "--threads", "1"]


def test_library_noise_is_hidden_by_default_and_shown_with_verbose(tmp_path, model_dir, task_file):
    quiet = loralab(*build_args(model_dir, task_file, tmp_path / "lib"), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert WEIGHTS_BAR not in quiet.stderr and "FutureWarning" not in quiet.stderr, quiet.stderr
    assert "t: training" in quiet.stderr  # loralab's own progress lines stay
    assert "adapter" in quiet.stdout  # the library table

    verbose = loralab("-v", *build_args(model_dir, task_file, tmp_path / "lib-v"), cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert WEIGHTS_BAR in verbose.stderr and DEPRECATION in verbose.stderr, verbose.stderr


def test_the_users_own_settings_win(monkeypatch):
    """-W/PYTHONWARNINGS, HF_HUB_DISABLE_PROGRESS_BARS and TRANSFORMERS_VERBOSITY are the user's: left alone."""
    import huggingface_hub.constants
    from transformers.utils import logging as hf_logging

    from loralab.cli import noise

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    noise.apply("quiet")  # ours: set, then taken back
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and hf_logging.get_verbosity() == logging.ERROR
    noise.apply("normal")
    assert "TRANSFORMERS_VERBOSITY" not in os.environ and hf_logging.get_verbosity() == logging.WARNING

    monkeypatch.setattr(sys, "warnoptions", ["default"])
    before = list(warnings.filters)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_PROGRESS_BARS", False)  # as if set to 0
    noise.apply("quiet")
    assert warnings.filters[:len(before)] == before and len(warnings.filters) == len(before)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info" and hf_logging.get_verbosity() == logging.INFO
    assert hf_logging.is_progress_bar_enabled()


def test_quiet_leaves_the_result_only(monkeypatch, capsys, tmp_path, task_file):
    out = tmp_path / "r.json"
    args = ["eval", "--model", "tiny-llama", "--task", str(task_file), "--out", str(out)]
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "acc_norm" in stdout
    assert [line for line in err.splitlines() if "wrote" in line] == [f"wrote {out}"]  # one line per output

    code, stdout, err = run_cli(monkeypatch, capsys, "-q", *args)
    assert code == 0 and "acc_norm" in stdout and err == ""  # the table is the result; no log or status line

    code, stdout, err = run_cli(monkeypatch, capsys, "train", "--method", "multitask_lora", "--model", "tiny-llama",
                                "--tasks", str(task_file), "--out", str(tmp_path / "ck"), "--max-steps", "1", "-q")
    assert code == 0 and stdout == ""
    assert err.splitlines() == [err.strip()] and err.startswith("trained multitask_lora for 1 steps")
    assert err.rstrip().endswith(f"wrote {tmp_path / 'ck'}")


def known_warning(message: str = "`is_gradient_checkpointing` is deprecated and will be removed in v6",
                  module: str = "transformers.modeling_utils") -> None:
    """Raise `message` as if from `module` (a fresh registry each time, so "default" shows it every time)."""
    warnings.warn_explicit(message, FutureWarning, f"{module.replace('.', '/')}.py", 1, module=module, registry={})


def test_the_known_warnings_are_hidden_by_their_message_and_origin(recwarn, monkeypatch):
    from loralab.cli import noise

    monkeypatch.setattr(sys, "warnoptions", [])  # as run without -W (pytest may pass its own)
    noise.apply("normal")
    known_warning()
    assert len(recwarn) == 0
    known_warning(module="mypackage.models")  # the same words from anywhere else are not hidden
    warnings.warn("a library's warning", UserWarning)
    assert [w.category for w in recwarn.list] == [FutureWarning, UserWarning]
    recwarn.clear()
    noise.apply("quiet")
    known_warning(module="mypackage.models")
    warnings.warn("a library's warning", UserWarning)
    assert len(recwarn) == 0  # -q: no warning at all
    noise.apply("verbose")
    known_warning()
    assert [str(w.message)[:30] for w in recwarn.list] == ["`is_gradient_checkpointing` is"]
