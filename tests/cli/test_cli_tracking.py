"""`--report-to` on `train` and `library build` (and the `report_to` hyperparameter): HF Trainer's reporting
integrations by their transformers names, checked before any work, with the TensorBoard events kept in the
output and recorded in the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli, toy_task

from loralab.errors import ConfigError
from loralab.library import LoRAHparams, load_hparams
from loralab.recipes.evaluate import export_task

HP_YAML = "max_steps: 2\nbatch_size: 4\nrank: 4\n"


@pytest.fixture
def task_file(tmp_path) -> Path:
    path = tmp_path / "toy.jsonl"
    export_task(toy_task("toy"), path, split="all")
    return path


@pytest.fixture
def hp_file(tmp_path) -> Path:
    path = tmp_path / "hp.yaml"
    path.write_text(HP_YAML, encoding="utf-8")
    return path


def scalar_tags(folder: Path) -> set[str]:
    """The scalar tags of the TensorBoard event files under `folder` (at least one file must be there)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.glob("**/events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {folder}"
    tags: set[str] = set()
    for parent in {f.parent for f in files}:
        acc = EventAccumulator(str(parent))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("method, record", [("multitask_lora", "loralab_train.json"),
                                            ("hydralora", "loralab_method.json")])
def test_train_keeps_tensorboard_events_and_records_them(monkeypatch, capsys, tmp_path, task_file, hp_file, method,
                                                         record):
    """Both ways a method is saved (a PEFT adapter, a method checkpoint) keep the events and say where."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "ckpt"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", method, "--model", "tiny-llama", "--tasks",
                           str(task_file), "--hparams", str(hp_file), "--report-to", "tensorboard", "--out", str(out))
    assert code == 0, err
    assert "train/loss" in scalar_tags(out / "tensorboard")
    info = json.loads((out / record).read_text())
    assert info["tracking"] == {"report_to": ["tensorboard"], "logging_dir": "tensorboard"}
    assert f"reported to tensorboard; TensorBoard events in {out / 'tensorboard'}" in err
    assert not out.with_name(".ckpt.work").exists()  # the work folder the events were written to is gone
    # the kept events do not disturb the checkpoint's own checks
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(task_file), "--adapter",
                           str(out), "--limit", "4")
    assert code == 0, err


def test_library_build_keeps_each_adapters_events(monkeypatch, capsys, tmp_path, task_file, hp_file):
    pytest.importorskip("tensorboard")
    lib = tmp_path / "lib"
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task_file),
                           "--hparams", str(hp_file), "--limit", "0", "--report-to", "tensorboard", "--out", str(lib))
    assert code == 0, err
    adapter = lib / "tiny-llama" / "toy"
    assert "train/loss" in scalar_tags(adapter / "tensorboard")
    entry = json.loads((adapter / "loralab.json").read_text())
    assert entry["metrics"]["tracking"] == {"report_to": ["tensorboard"], "logging_dir": "tensorboard"}
    assert entry["hparams"]["report_to"] == "tensorboard"
    assert "tensorboard" not in entry["files"]  # the entry hashes the adapter's files, not the event folder
    code, out, err = run_cli(monkeypatch, capsys, "library", "ls", str(lib))
    assert code == 0 and "toy" in out, err  # the entry still verifies


def test_no_report_to_records_nothing_new(monkeypatch, capsys, tmp_path, task_file, hp_file):
    """Without tracking, a result is what it was before tracking was recorded (no key, no folder)."""
    out = tmp_path / "ckpt"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "multitask_lora", "--model", "tiny-llama",
                           "--tasks", str(task_file), "--hparams", str(hp_file), "--out", str(out))
    assert code == 0, err
    assert "tracking" not in json.loads((out / "loralab_train.json").read_text())
    assert not (out / "tensorboard").exists() and "reported to" not in err


@pytest.mark.parametrize("value, needle", [
    ("wandbb", "--report-to: unknown reporting integration (got 'wandbb', did you mean 'wandb'?; allowed: none, all"),
    ("tensorboard,none", "'none' and 'all' stand alone (got 'tensorboard,none'"),
    (",", "--report-to: no integration named"),
])
@pytest.mark.parametrize("command", ["train", "build"])
def test_an_unknown_integration_is_one_line_naming_the_flag(monkeypatch, capsys, tmp_path, task_file, value, needle,
                                                             command):
    out = tmp_path / "out"
    argv = (["train", "--method", "multitask_lora", "--tasks"] if command == "train" else
            ["library", "build", "--tasks"])
    code, stdout, err = run_cli(monkeypatch, capsys, *argv, str(task_file), "--model", "tiny-llama", "--report-to",
                                value, "--out", str(out))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert "mlflow" in err  # the allowed names are transformers' own
    assert not out.exists() and stdout == ""


@pytest.mark.parametrize("command", ["train", "build"])
def test_a_missing_integration_package_is_named_before_any_work(monkeypatch, capsys, tmp_path, task_file, command):
    """wandb is a name transformers knows; without its package the run stops before the model loads."""
    import transformers.integrations.integration_utils as hf

    import loralab.library.build
    import loralab.recipes.train

    monkeypatch.setattr(hf, "is_wandb_available", lambda: False)  # whether or not it is installed here

    def no_model_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the integration was checked")

    for module in (loralab.recipes.train, loralab.library.build):
        monkeypatch.setattr(module, "load_model", no_model_load)
    out = tmp_path / "out"
    argv = (["train", "--method", "multitask_lora", "--tasks"] if command == "train" else
            ["library", "build", "--tasks"])
    code, _, err = run_cli(monkeypatch, capsys, *argv, str(task_file), "--model", "tiny-llama", "--report-to",
                           "tensorboard,wandb", "--out", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert "error: report_to: 'wandb' cannot report from this environment: WandbCallback requires wandb to be " \
           "installed. Run `pip install wandb`." in err
    assert not out.exists()


def test_report_to_in_the_hyperparameters_file(tmp_path):
    """A YAML list or a comma-separated string, one canonical value; wrong types and names are one line."""
    path = tmp_path / "hp.yaml"
    path.write_text("report_to: [tensorboard, wandb, tensorboard]\n", encoding="utf-8")
    hp = load_hparams(path)
    assert hp.report_to == ("tensorboard", "wandb")
    assert hp.to_dict()["report_to"] == ["tensorboard", "wandb"]
    assert LoRAHparams(report_to="tensorboard, wandb") == hp
    assert LoRAHparams(report_to=["tensorboard"]).report_to == "tensorboard"  # one name stays a string
    assert LoRAHparams().to_dict()["report_to"] == "none"
    path.write_text("report_to: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"hp.yaml: report_to: .*got 3; allowed: none, all, an integration name"):
        load_hparams(path)
    path.write_text("report_to: [tensorbord]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"hp.yaml: report_to: unknown reporting integration \(got 'tensorbord', "
                                          r"did you mean 'tensorboard'\?"):
        load_hparams(path)


def test_all_is_resolved_to_what_is_installed_and_recorded(tmp_path):
    """`all` is HF's: every installed integration; the record lists what the run reported to."""
    pytest.importorskip("tensorboard")
    from transformers.integrations import get_available_reporting_integrations

    from loralab.models import build_tiny_model
    from loralab.recipes.train import train_method

    installed = get_available_reporting_integrations()
    if installed != ["tensorboard"]:
        pytest.skip(f"other integrations are installed here ({installed}); they might need network or accounts")
    info = train_method("multitask_lora", build_tiny_model("llama"), [toy_task("toy")], tmp_path / "ckpt",
                        hparams=LoRAHparams(max_steps=1, batch_size=4, rank=4, report_to="all"), progress=False)
    assert info["tracking"] == {"report_to": ["tensorboard"], "logging_dir": "tensorboard"}
    assert info["hparams"]["report_to"] == "all"


def test_what_is_kept_is_the_trainers_logging_dir(tmp_path):
    """Independent of TensorBoard: the events the Trainer writes under its work folder's runs/ are what is kept."""
    from loralab.training.tracking import EVENTS_DIR, keep_events, tracking_record, trainer_logs

    work = tmp_path / "work"
    (trainer_logs(work) / "stamp").mkdir(parents=True)
    (trainer_logs(work) / "stamp" / "events.out.tfevents.1").write_bytes(b"x")
    assert tracking_record(["tensorboard"], work) == {"report_to": ["tensorboard"], "logging_dir": EVENTS_DIR}
    assert tracking_record([], work) is None
    dest = tmp_path / "dest"
    dest.mkdir()
    assert keep_events(work, dest) and (dest / EVENTS_DIR / "stamp" / "events.out.tfevents.1").read_bytes() == b"x"
    assert not keep_events(tmp_path / "nothing", dest)
