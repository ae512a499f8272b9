"""Configs on the command line: KEY=VALUE overrides, --print-config, `configs ls/show/cp`, `train --seed`, and
`--resume/--no-resume` on `train` and `library build` (tiny-llama, toy JSONL tasks)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from helpers import run_cli
from loralab.configs import SHIPPED, config_path, copy_config, list_configs
from loralab.errors import UnknownNameError, UserInputError
from loralab.training.hparams import LoRAHparams, load_hparams
from loralab.training.trainer import AnswerOnlyTrainer

CHECKOUT = Path(__file__).resolve().parents[2]


def write_task(path: Path, n: int = 16) -> Path:
    rows = [{"id": f"{path.stem}{i:02d}", "prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"],
             "answer_index": i % 2, "split": "test" if i % 4 == 0 else "train"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ configs ls/show/cp


def test_configs_ls_lists_every_shipped_config(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "configs", "ls")
    assert code == 0
    for name in ("quickstart", "loralib", "library-cpu"):
        assert name in out
    assert "benchmark grid" in out and "training hyperparameters" in out
    assert "sized for a 2-core CPU" in out  # the description: the file's first comment line


def test_every_yaml_file_in_the_package_is_declared_and_valid():
    files = {p.name.removesuffix(".yaml") for p in resources.files("loralab.configs").iterdir()
             if p.name.endswith(".yaml")}
    assert files == set(SHIPPED)
    assert [(c.name, c.kind) for c in list_configs()] == [("loralib", "bench"), ("quickstart", "bench"),
                                                          ("library-cpu", "hparams")]
    assert [c.name for c in list_configs("hparams")] == ["library-cpu"]
    for config in list_configs("hparams"):
        assert isinstance(load_hparams(config.path), LoRAHparams)
    # the preset is the checkout's configs/library-cpu.yaml (README commands use that path)
    assert config_path("library-cpu").read_bytes() == (CHECKOUT / "configs" / "library-cpu.yaml").read_bytes()


def test_configs_show_prints_the_file_as_written(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "configs", "show", "quickstart")
    assert code == 0 and out == config_path("quickstart").read_text(encoding="utf-8")


@pytest.mark.parametrize("verb", [["show"], ["cp"]])
def test_unknown_config_name_did_you_mean(monkeypatch, capsys, tmp_path, verb):
    dest = [str(tmp_path / "x.yaml")] if verb == ["cp"] else []
    code, _, err = run_cli(monkeypatch, capsys, "configs", *verb, "quickstrat", *dest)
    assert code == 2
    assert "unknown shipped config 'quickstrat'. Did you mean 'quickstart'?" in one_error_line(err)
    assert not (tmp_path / "x.yaml").exists()


def test_configs_cp_writes_refuses_to_overwrite_and_force(monkeypatch, capsys, tmp_path):
    dest = tmp_path / "sub" / "grid.yaml"
    code, _, err = run_cli(monkeypatch, capsys, "configs", "cp", "quickstart", str(dest))
    assert code == 0 and f"wrote {dest}" in err
    assert dest.read_bytes() == config_path("quickstart").read_bytes()
    dest.write_text("# my edits\nname: mine\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "configs", "cp", "quickstart", str(dest))
    assert code == 2 and "exists; pass --force to replace it" in one_error_line(err)
    assert dest.read_text(encoding="utf-8") == "# my edits\nname: mine\n"  # untouched
    code, _, _ = run_cli(monkeypatch, capsys, "configs", "cp", "quickstart", str(dest), "--force")
    assert code == 0 and dest.read_bytes() == config_path("quickstart").read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["grid.yaml"]  # no temporary file left
    # an existing folder: DEST/NAME.yaml
    code, _, err = run_cli(monkeypatch, capsys, "configs", "cp", "library-cpu", str(tmp_path))
    assert code == 0 and (tmp_path / "library-cpu.yaml").read_bytes() == config_path("library-cpu").read_bytes()


def test_copy_config_python_api(tmp_path):
    path = copy_config("library-cpu", tmp_path / "hp.yaml")
    assert path == tmp_path / "hp.yaml" and load_hparams(path) == load_hparams(config_path("library-cpu"))
    with pytest.raises(UserInputError, match="exists; pass force to replace it"):
        copy_config("loralib", path)
    assert copy_config("loralib", path, force=True).read_bytes() == config_path("loralib").read_bytes()
    with pytest.raises(UnknownNameError, match="did you mean|Did you mean"):
        copy_config("lorlib", tmp_path / "other.yaml")
    with pytest.raises(UserInputError, match="is not a regular file"):
        copy_config("loralib", "/dev/null", force=True)


# ------------------------------------------------------------------------------------------------ train


def train_args(tmp_path: Path, *extra: str, method: str = "loramoe") -> list[str]:
    task = write_task(tmp_path / "toy.jsonl")
    return ["train", "--method", method, "--model", "tiny-llama", "--tasks", str(task), "--out",
            str(tmp_path / "ckpt"), *extra]


def test_train_print_config_applies_overrides_and_writes_nothing(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, *train_args(tmp_path, "rank=4", "train.max_steps=50",
                                                             "learning_rate=1e-3", "method.num_experts=3",
                                                             "--seed", "7", "--print-config"))
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert out.startswith("# loralab train --method loramoe")
    assert (printed["rank"], printed["max_steps"], printed["learning_rate"], printed["seed"]) == (4, 50, 1e-3, 7)
    assert printed["val_every"] is None and printed["val_examples"] == 64  # every field, defaults included
    assert printed["method"]["num_experts"] == 3 and printed["method"]["targets"] == "ffn"  # method defaults too
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / ".ckpt.work").exists()
    # the top-level keys are a --hparams file, `method:` a --method-config file: the same config again
    hp_file, method_file = tmp_path / "hp.yaml", tmp_path / "method.yaml"
    hp_file.write_text(yaml.safe_dump({k: v for k, v in printed.items() if k != "method"}), encoding="utf-8")
    method_file.write_text(yaml.safe_dump(printed["method"]), encoding="utf-8")
    code, again, _ = run_cli(monkeypatch, capsys, *train_args(tmp_path, "--hparams", str(hp_file), "--method-config",
                                                              str(method_file), "--print-config"))
    assert code == 0 and yaml.safe_load(again) == printed


@pytest.mark.parametrize("overrides, needle", [
    (["rnak=4"], "error: overrides: unknown key 'rnak' (did you mean 'rank'?); allowed: alpha, batch_size"),
    (["rank=four"], "error: overrides: rank: wrong type (got 'four'; allowed: an integer >= 1)"),
    (["train.rank=0"], "error: overrides: rank: out of range (got 0; allowed: an integer >= 1)"),
    (["method.num_experst=2"], "error: overrides: method: unknown key 'num_experst' (did you mean 'num_experts'?)"),
    (["method.num_experts=two"], "error: overrides: method.num_experts: wrong type (got 'two'"),
    (["method=loramoe"], "error: override 'method=loramoe': method is a section; set its keys as method.KEY=VALUE"),
    (["rank"], "error: override 'rank' is not KEY=VALUE"),
    (["rank=4", "rank=8"], "error: override key rank is given twice: 'rank=4' and 'rank=8'"),
    (["max_steps=10", "--max-steps", "5"], "error: --max-steps is given twice: by its option (5) and by the override "
                                           "'max_steps=10'; give it once"),
    (["seed=1", "--seed", "2"], "error: --seed is given twice"),
    (["--seed", "-1"], "error: options: seed: out of range (got -1;"),
])
@pytest.mark.parametrize("print_config", [False, True])
def test_train_bad_override_one_line_nothing_written(monkeypatch, capsys, tmp_path, overrides, needle, print_config):
    extra = [*overrides, *(["--print-config"] if print_config else [])]
    code, out, err = run_cli(monkeypatch, capsys, *train_args(tmp_path, *extra))
    assert code == 2 and one_error_line(err).startswith(needle), err
    assert out == "" and not (tmp_path / "ckpt").exists() and not (tmp_path / ".ckpt.work").exists()


def test_train_seed_is_recorded_in_the_checkpoint(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, *train_args(tmp_path, "--seed", "7", "max_steps=1", "batch_size=4",
                                                             "rank=2", "max_length=64", method="lora"))
    assert code == 0, err
    record = json.loads((tmp_path / "ckpt" / "loralab_train.json").read_text(encoding="utf-8"))
    assert record["hparams"]["seed"] == 7 and record["hparams"]["rank"] == 2 and record["train"]["steps"] == 1


# ------------------------------------------------------------------------------------------------ resume


END_STEP = AnswerOnlyTrainer.end_step
FAST = ["max_steps=3", "checkpoint_steps=1", "batch_size=4", "rank=2", "max_length=64"]


def record_steps(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    """The optimiser steps run from now on; with `interrupt_at`, a Ctrl-C right after that step."""
    real = END_STEP  # not the attribute: an earlier call of this may have replaced it in the same test
    seen: list[int] = []

    def end_step(self, step):
        real(self, step)
        seen.append(step)
        if step == interrupt_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(AnswerOnlyTrainer, "end_step", end_step)
    return seen


def interrupted_train(monkeypatch, capsys, tmp_path) -> list[str]:
    """A `train` interrupted after step 2 of 3 (a checkpoint every step); returns its arguments."""
    args = train_args(tmp_path, *FAST, method="lora")
    record_steps(monkeypatch, interrupt_at=2)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 130 and "interrupted" in err
    assert list((tmp_path / ".ckpt.work").glob("checkpoint-*")) and not (tmp_path / "ckpt").exists()
    return args


def latest_step(work: Path) -> int:
    from loralab.training.checkpoints import latest_checkpoint

    found = latest_checkpoint(work)
    assert found is not None
    return int(found.name.split("-")[1])


def test_train_resume_continues_from_the_last_checkpoint(monkeypatch, capsys, tmp_path):
    args = interrupted_train(monkeypatch, capsys, tmp_path)
    done = latest_step(tmp_path / ".ckpt.work")
    seen = record_steps(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--resume")
    assert code == 0, err
    assert seen == list(range(done + 1, 4))  # only the steps after the checkpoint ran
    assert json.loads((tmp_path / "ckpt" / "loralab_train.json").read_text())["train"]["steps"] == 3
    assert not (tmp_path / ".ckpt.work").exists()  # removed once the checkpoint is written


def test_train_resume_refuses_other_settings_and_keeps_the_checkpoint(monkeypatch, capsys, tmp_path):
    args = interrupted_train(monkeypatch, capsys, tmp_path)
    work = tmp_path / ".ckpt.work"
    before = sorted(p.name for p in work.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, *args, "learning_rate=1e-3", "--resume")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: --resume: the checkpoint in {work} was trained with other settings")
    assert "hparams.learning_rate 0.0005 -> 0.001" in line and "nothing was removed" in line
    assert sorted(p.name for p in work.iterdir()) == before and not (tmp_path / "ckpt").exists()


def test_train_no_resume_starts_over(monkeypatch, capsys, tmp_path):
    args = interrupted_train(monkeypatch, capsys, tmp_path)
    seen = record_steps(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--no-resume")
    assert code == 0, err
    assert seen == [1, 2, 3]


def test_train_default_resumes_a_matching_checkpoint(monkeypatch, capsys, tmp_path):
    args = interrupted_train(monkeypatch, capsys, tmp_path)
    done = latest_step(tmp_path / ".ckpt.work")
    seen = record_steps(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert seen == list(range(done + 1, 4))


@pytest.mark.parametrize("extra, needle", [
    ([], "checkpoint_steps is not set, so training saves none"),
    (["checkpoint_steps=5"], "training saves one every 5 steps (checkpoint_steps)"),
])
def test_train_resume_without_a_checkpoint_fails_before_any_work(monkeypatch, capsys, tmp_path, extra, needle):
    code, _, err = run_cli(monkeypatch, capsys, *train_args(tmp_path, *extra, "--resume", method="lora"))
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: --resume: no complete checkpoint to resume in "
                                         f"{tmp_path / '.ckpt.work'}") and needle in line
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / ".ckpt.work").exists()


def test_train_resume_on_a_finished_checkpoint_says_so(monkeypatch, capsys, tmp_path):
    args = train_args(tmp_path, "max_steps=1", "batch_size=4", "rank=2", "max_length=64", method="lora")
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    before = (tmp_path / "ckpt" / "adapter_model.safetensors").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *args, "--resume")
    assert code == 2 and "out holds a finished checkpoint" in one_error_line(err)
    assert (tmp_path / "ckpt" / "adapter_model.safetensors").read_bytes() == before


# ------------------------------------------------------------------------------------------------ library build


def library_args(tmp_path: Path, *extra: str) -> list[str]:
    task = write_task(tmp_path / "toy.jsonl")
    return ["library", "build", "--model", "tiny-llama", "--tasks", str(task), "--out", str(tmp_path / "lib"),
            "--limit", "0", *extra]


def test_library_build_overrides_and_print_config(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, *library_args(tmp_path, "rank=4", "train.max_steps=20",
                                                               "--print-config"))
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert (printed["rank"], printed["max_steps"], printed["alpha"]) == (4, 20, 16.0)
    assert not (tmp_path / "lib").exists()
    # the output is a --hparams file that resolves to itself
    (tmp_path / "hp.yaml").write_text(out, encoding="utf-8")
    code, again, _ = run_cli(monkeypatch, capsys, *library_args(tmp_path, "--hparams", str(tmp_path / "hp.yaml"),
                                                                 "--print-config"))
    assert code == 0 and again == out
    code, _, err = run_cli(monkeypatch, capsys, *library_args(tmp_path, "max_step=3"))
    assert code == 2 and "unknown key 'max_step' (did you mean 'max_steps'?)" in one_error_line(err)
    assert not (tmp_path / "lib").exists()


def test_library_build_resume(monkeypatch, capsys, tmp_path):
    args = library_args(tmp_path, *FAST)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--resume")
    assert code == 2 and "--resume: " in one_error_line(err) and "is not a LoRA library yet" in err
    assert not (tmp_path / "lib").exists()
    record_steps(monkeypatch, interrupt_at=2)
    assert run_cli(monkeypatch, capsys, *args)[0] == 130
    work = tmp_path / "lib" / ".work" / "tiny-llama" / "toy"
    done = latest_step(work)
    # other settings: refused, the checkpoint kept
    before = sorted(p.name for p in work.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, *args, "seed=5", "--resume")
    assert code == 2 and "hparams.seed 0 -> 5" in one_error_line(err)
    assert sorted(p.name for p in work.iterdir()) == before
    seen = record_steps(monkeypatch)
    code, out, err = run_cli(monkeypatch, capsys, *args, "--resume")
    assert code == 0, err
    assert seen == list(range(done + 1, 4)) and "toy" in out
    # a finished library: --resume has nothing to train (the adapter is skipped), --no-resume keeps it too
    seen.clear()
    for flag in ("--resume", "--no-resume"):
        assert run_cli(monkeypatch, capsys, *args, flag)[0] == 0
    assert seen == []


def test_library_build_no_resume_starts_the_interrupted_adapter_over(monkeypatch, capsys, tmp_path):
    args = library_args(tmp_path, *FAST)
    record_steps(monkeypatch, interrupt_at=2)
    assert run_cli(monkeypatch, capsys, *args)[0] == 130
    seen = record_steps(monkeypatch)
    assert run_cli(monkeypatch, capsys, *args, "--no-resume")[0] == 0
    assert seen == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ compare


def test_compare_overrides_and_print_config(monkeypatch, capsys, tmp_path):
    task = write_task(tmp_path / "toy.jsonl")
    args = ["compare", "--model", "tiny-llama", "--methods", "base,lora", "--tasks", str(task), "--out",
            str(tmp_path / "cmp")]
    code, out, err = run_cli(monkeypatch, capsys, *args, "rank=4", "train.max_steps=2", "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert (printed["rank"], printed["max_steps"]) == (4, 2) and not (tmp_path / "cmp").exists()
    code, _, err = run_cli(monkeypatch, capsys, *args, "rank=0")
    assert code == 2 and one_error_line(err).startswith("error: overrides: rank: out of range")
    assert not (tmp_path / "cmp").exists()


# ------------------------------------------------------------------------------------------------ bench


@pytest.fixture
def grid_file(tmp_path) -> Path:
    tasks = [str(write_task(tmp_path / f"{name}.jsonl")) for name in ("alpha", "beta", "gamma")]
    grid = {"name": "tiny", "models": ["tiny-llama"], "methods": ["base", "loramoe"], "targets": [tasks[0]],
            "library": {"tasks": tasks, "hparams": {"max_steps": 1, "max_length": 64}},
            "strategies": ["random"], "k": [1], "seeds": [0, 1],
            "train": {"max_steps": 1, "batch_size": 4, "max_length": 64}, "eval": {"limit": 4}, "device": "cpu"}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


def test_bench_overrides_change_the_grid(monkeypatch, capsys, tmp_path, grid_file):
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), "--dry-run")
    assert code == 0 and "tiny: 3 cells" in out, err  # base once, loramoe per seed
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), "seeds=[0]", "--dry-run")
    assert code == 0 and "tiny: 2 cells" in out, err
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), "seeds=0", "methods=[base]", "--dry-run")
    assert code == 0 and "tiny: 1 cells" in out, err  # a one-value list key takes the value, as in the file


def test_bench_print_config_is_the_resolved_grid(monkeypatch, capsys, tmp_path, grid_file):
    from loralab.bench import expand, load_bench

    overrides = ["train.max_steps=5", "eval.limit=8", "library.hparams.rank=2", "method_config.loramoe.rank=2"]
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), *overrides, "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["train"]["max_steps"] == 5 and printed["train"]["rank"] == 8  # filled in with the defaults
    assert printed["eval"] == {"split": "test", "limit": 8, "batch_size": 8, "apply_chat_template": False}
    assert printed["library"]["hparams"]["rank"] == 2 and printed["library"]["hparams"]["max_steps"] == 1
    assert printed["method_config"] == {"loramoe": {"rank": 2}} and printed["keep_checkpoints"] is False
    assert all(Path(t).is_absolute() for t in [*printed["targets"], *printed["library"]["tasks"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.jsonl", "beta.jsonl", "gamma.jsonl", "grid.yaml"]
    # the printed grid, run from anywhere, expands to the same cells
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "resolved.yaml").write_text(out, encoding="utf-8")
    want = sorted(c.cell_id for c in expand(load_bench(grid_file, overrides=overrides)))
    assert sorted(c.cell_id for c in expand(load_bench(elsewhere / "resolved.yaml"))) == want


@pytest.mark.parametrize("overrides, needle", [
    (["trian.max_steps=5"], "error: overrides: unknown key 'trian' (did you mean 'train'?)"),
    (["train.max_step=5"], "error: overrides: train: unknown key 'max_step' (did you mean 'max_steps'?)"),
    (["eval.limit=0"], "error: overrides: eval.limit: out of range (got 0;"),
    (["seeds=[-1]"], "error: overrides: seeds[0]: out of range"),
    (["methods=[lorramoe]"], "lorramoe"),
    (["precision=bf16", "--precision", "fp32"], "error: --precision is given twice"),
    (["train.rank="], "error: override 'train.rank=' has no value"),
])
def test_bench_bad_override_one_line(monkeypatch, capsys, tmp_path, grid_file, overrides, needle):
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), *overrides, "--out",
                             str(tmp_path / "out"), "--print-config")
    assert code == 2 and needle in one_error_line(err) and out == ""
    assert not (tmp_path / "out").exists()


def test_bench_file_errors_still_name_the_file(monkeypatch, capsys, tmp_path, grid_file):
    grid_file.write_text(grid_file.read_text(encoding="utf-8") + "rnak: 3\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "bench", str(grid_file), "seeds=[0]", "--dry-run")
    assert code == 2 and one_error_line(err).startswith(f"error: {grid_file}: unknown key 'rnak'")


@pytest.mark.data
def test_bench_first_word_override_means_the_quickstart(monkeypatch, capsys, tmp_path, data_dir):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "bench", "seeds=[0]", "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["name"] == "quickstart" and printed["seeds"] == [0]
