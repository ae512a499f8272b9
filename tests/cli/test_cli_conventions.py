"""The command line's conventions: one spelling per concept (old ones as hidden aliases), global options
before or after the verb, `--version`, an example in every `--help`, and flag names in library errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import pytest
import torch
import typer

from helpers import run_cli
from loralab.cli import app
from loralab.cli.app import verb
from loralab.cli.errors import flag_message
from loralab.errors import EmptySplitError, ModelLoadError, UserInputError


def click_command(*path: str):
    """The click object behind `loralab PATH...` (the group for a group)."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def parsed(*argv: str) -> dict:
    """The parameter values `loralab ARGV` gives its command, without running it."""
    words = list(argv)
    command = typer.main.get_command(app)
    while hasattr(command, "commands"):
        command = command.commands[words.pop(0)]
    return command.make_context(command.name, words).params


def every_command(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from every_command(sub, (*path, name))


@pytest.fixture
def task_file(tmp_path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q: {i}?\nA:", "choices": [" yes", " no"],
                                        "answer_index": i % 2, "split": "test"}) + "\n" for i in range(6)),
                    encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def restore_process_settings():
    """Global options set torch threads and the root log level for the process: put them back."""
    threads, level = torch.get_num_threads(), logging.getLogger().level
    yield
    torch.set_num_threads(threads)
    logging.getLogger().setLevel(level)


# ------------------------------------------------------------------------------------------ one spelling per concept

BUILD = ["library", "build", "--model", "tiny-llama", "--tasks", "a,b", "--out", "lib"]
ADD = ["library", "add", "lib", "--adapter", "ad", "--task", "a"]
TRAIN = ["train", "--method", "loramoe", "--model", "tiny-llama", "--out", "ck"]
ROUTER = ["analyze-router", "--model", "tiny-llama", "--adapter", "ck", "--out", "r"]
COMPARE = ["compare", "--model", "tiny-llama", "--methods", "base", "--tasks", "a", "--out", "c"]
SELECT = ["select", "--strategy", "random", "--library", "lib", "--task", "a", "--k", "1", "--model", "tiny-llama"]


@pytest.mark.parametrize("old, new, expected", [
    (BUILD + ["--config", "hp.yaml"], BUILD + ["--hparams", "hp.yaml"], {"hparams": Path("hp.yaml")}),
    (BUILD + ["--eval-limit", "3"], BUILD + ["--limit", "3"], {"limit": 3}),
    (BUILD + ["--eval-limit=3"], BUILD + ["--limit=3"], {"limit": 3}),
    (BUILD + ["--eval-split", "all"], BUILD + ["--split", "all"], {"split": "all"}),
    (ADD + ["--eval-limit", "5", "--eval-split", "all"], ADD + ["--limit", "5", "--split", "all"],
     {"limit": 5, "split": "all"}),
    (TRAIN + ["--task", "a,b"], TRAIN + ["--tasks", "a,b"], {"tasks": "a,b"}),
    (TRAIN + ["--tasks", "a", "--config", "m.yaml"], TRAIN + ["--tasks", "a", "--method-config", "m.yaml"],
     {"method_config": Path("m.yaml"), "hparams": None}),
    (ROUTER + ["--task", "a,b"], ROUTER + ["--tasks", "a,b"], {"tasks": "a,b"}),
    (COMPARE + ["--eval-limit", "7"], COMPARE + ["--limit", "7"], {"limit": 7}),
    (COMPARE + ["--include-own", "--no-include-own"], COMPARE + ["--include-own", "--exclude-own"],
     {"include_own": False}),
])
def test_old_and_new_spelling_give_the_same_values(old, new, expected):
    assert parsed(*old) == parsed(*new)
    assert expected.items() <= parsed(*new).items()


@pytest.mark.parametrize("argv", [COMPARE, SELECT])
def test_include_own_is_one_pair_and_leaves_out_by_default(argv):
    assert parsed(*argv)["include_own"] is False
    assert parsed(*argv, "--include-own")["include_own"] is True
    assert parsed(*argv, "--include-own", "--exclude-own")["include_own"] is False
    assert "--include-own / --exclude-own" in click_command(argv[0]).get_help(
        click_command(argv[0]).make_context(argv[0], ["--help"], resilient_parsing=True))


@pytest.mark.parametrize("path, hidden", [
    (("library", "build"), ["--config", "--eval-limit", "--eval-split"]),
    (("library", "add"), ["--eval-limit", "--eval-split"]),
    (("train",), ["--task ", "--config"]),
    (("analyze-router",), ["--task "]),
    (("compare",), ["--eval-limit", "--no-include-own"]),
])
def test_old_spellings_are_not_listed_in_help(monkeypatch, capsys, path, hidden):
    code, out, _ = run_cli(monkeypatch, capsys, *path, "--help")
    assert code == 0
    options = out.split("Example:")[0]  # examples use the new spellings; the option list must not show the old
    assert not [h for h in hidden if h in options], options


def test_an_option_value_that_looks_like_an_option_is_left_alone():
    argv = ["eval", "--model", "tiny-llama", "--task", "-v", "--out", "--threads", "--adapter", "--task"]
    values = parsed(*argv)
    assert (values["task"], values["out"], values["adapter"]) == ("-v", Path("--threads"), Path("--task"))
    assert parsed(*BUILD[:-1], "--eval-limit")["out"] == Path("--eval-limit")  # not rewritten as an alias


# ------------------------------------------------------------------------------------------ global options

def test_global_options_work_after_the_verb(monkeypatch, capsys, task_file):
    code, out, err = run_cli(monkeypatch, capsys, "tasks", "ls", "--threads", "1", "-v")
    assert code == 0 and "40 tasks" in out, err
    assert torch.get_num_threads() == 1 and logging.getLogger().level == logging.DEBUG
    # -q: errors and the final result only; the export's result is its one line
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", str(task_file), "--out", str(task_file.with_name(
        "e.jsonl")), "--quiet")
    assert code == 0 and err.strip() == f"wrote 6 examples to {task_file.with_name('e.jsonl')}"
    assert logging.getLogger().level == logging.ERROR
    code, _, err = run_cli(monkeypatch, capsys, "-q", "data", "export", str(task_file), "--out",
                           str(task_file.with_name("e.jsonl")))
    assert code == 0 and err.strip() == f"wrote 6 examples to {task_file.with_name('e.jsonl')}"
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", str(task_file), "--out",
                           str(task_file.with_name("e.jsonl")))
    assert code == 0 and err.strip() == f"wrote 6 examples to {task_file.with_name('e.jsonl')}"


@pytest.mark.parametrize("argv, needle", [
    (["tasks", "ls", "--threads", "0"], "error: --threads must be >= 1, got 0"),
    (["tasks", "ls", "--threads=two"], "error: --threads must be an integer >= 1, got 'two'"),
    (["tasks", "ls", "--threads"], "error: --threads needs a value"),
    (["-v", "tasks", "ls", "-q"], "error: -v/--verbose and -q/--quiet exclude each other"),
])
def test_bad_global_options_after_the_verb(monkeypatch, capsys, argv, needle):
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2 and out == "" and err.startswith(needle) and err.count("\n") == 1, err


def test_version_flag_and_command(monkeypatch, capsys):
    from loralab import __version__

    assert run_cli(monkeypatch, capsys, "--version") == (0, f"{__version__}\n", "")
    assert run_cli(monkeypatch, capsys, "version") == (0, f"{__version__}\n", "")


# ------------------------------------------------------------------------------------------ help

@pytest.mark.parametrize("path", list(every_command()), ids=lambda p: " ".join(p) or "loralab")
def test_every_help_has_an_example_and_no_bool_label(monkeypatch, capsys, path):
    code, out, _ = run_cli(monkeypatch, capsys, *path, "--help")
    assert code == 0 and "Usage" in out
    example = out.split("Example:", 1)[1]
    assert example.lstrip().startswith("loralab"), out
    assert "<bool>" not in out and "--threads" in example  # the global-options note


# ------------------------------------------------------------------------------------ parameter -> flag in errors

def test_flag_message_rewrites_the_first_whole_word_of_each_parameter():
    flags = {"out": "--out", "experts": "--experts", "library": "--library"}
    assert flag_message("out '/tmp/out' is an existing folder", ("out",), flags) == \
        "--out '/tmp/out' is an existing folder"
    assert flag_message("experts needs library (the folder the expert LoRAs come from)", ("experts", "library"),
                        flags) == "--experts needs --library (the folder the expert LoRAs come from)"
    assert flag_message("--out 'x' exists", ("--out",), flags) == "--out 'x' exists"  # already a flag
    assert flag_message("library.path 'x' is a file", ("library.path",), flags) == "library.path 'x' is a file"
    assert flag_message("limit must be >= 1", ("limit",), flags) == "limit must be >= 1"  # not this command's


def test_library_errors_name_the_parameter_and_the_cli_the_flag(monkeypatch, capsys, task_file, tmp_path):
    from loralab.data import load_task
    from loralab.models.loading import check_device

    with pytest.raises(EmptySplitError) as info:
        load_task(str(task_file)).split("test", 0)
    assert str(info.value) == "limit must be >= 1, got 0" and info.value.params == ("limit",)
    with pytest.raises(ModelLoadError) as info:
        check_device("foo")
    assert str(info.value).startswith("device 'foo' is not a device") and info.value.params == ("device",)
    (tmp_path / "taken").mkdir()
    for argv, line in [
        (["eval", "--model", "tiny-llama", "--task", str(task_file), "--limit", "0"], "--limit must be >= 1, got 0"),
        (["tasks", "show", str(task_file), "-n", "0"], "-n must be >= 1, got 0"),
        (["data", "export", str(task_file), "--out", str(tmp_path / "taken")],
         f"--out {str(tmp_path / 'taken')!r} is an existing folder"),
        (["library", "build", "--model", "tiny-llama", "--tasks", str(task_file), "--out", str(tmp_path / "lib"),
          "--limit", "-1"], "--limit must be >= 0, got -1"),
        (["library", "build", "--model", "tiny-llama", "--tasks", str(task_file), "--out", str(tmp_path / "lib"),
          "--eval-limit", "-1"], "--eval-limit must be >= 0, got -1"),  # the spelling the user typed
        (["train", "--method", "base", "--model", "tiny-llama", "--tasks", ",", "--out", str(tmp_path / "ck")],
         "--tasks must name at least one task"),
        (["train", "--method", "base", "--model", "tiny-llama", "--task", ",", "--out", str(tmp_path / "ck")],
         "--task must name at least one task"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *argv)
        assert code == 2 and err.startswith(f"error: {line}") and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "lib").exists() and not (tmp_path / "ck").exists()


def test_an_error_without_declared_parameters_is_printed_as_raised(monkeypatch, capsys, task_file):
    def fail(*args, **kwargs):
        raise UserInputError("limit of patience reached")  # names no parameter: no rewrite

    monkeypatch.setattr("loralab.recipes.evaluate.export_task", fail)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", str(task_file), "--out", "x.jsonl")
    assert code == 2 and err == "error: limit of patience reached\n"


# ------------------------------------------------------------------------------------------ declarations, exit codes

def _limit_command(limit: int = 1) -> None:
    """Takes --limit."""


def _quiet_command(quiet: Annotated[bool, typer.Option("-q")] = False) -> None:
    """Declares the global -q itself."""


@pytest.mark.parametrize("command, aliases, needle", [
    (_limit_command, {"--old": "--nope"}, "aliases point at undeclared flags ['--nope']"),
    (_limit_command, {"--limit": "--limit"}, "declares ['--limit'], a global option or hidden alias"),
    (_quiet_command, None, "declares ['-q'], a global option or hidden alias"),
])
def test_bad_declarations_fail_when_the_app_is_built(command, aliases, needle):
    group = typer.Typer()
    verb(group, "run", example="loralab run", aliases=aliases)(command)
    verb(group, "other", example="loralab other")(lambda: None)  # two commands: a group, as the real app
    with pytest.raises(RuntimeError) as info:
        typer.main.get_command(group)
    assert needle in str(info.value)


def test_bench_with_failed_cells_exits_1(monkeypatch, capsys, tmp_path):
    result = SimpleNamespace(cells=2, ran=2, skipped=0, failed=[{"label": "base/t", "error": "boom"}],
                             report=tmp_path / "report.md", db=tmp_path / "bench.sqlite")
    monkeypatch.setattr("loralab.bench.load_bench",
                        lambda config, precision=None, overrides=(): SimpleNamespace(precision_name="fp32"))
    monkeypatch.setattr("loralab.bench.run_bench", lambda *args, **kwargs: result)
    code, out, err = run_cli(monkeypatch, capsys, "bench", "grid.yaml", "-q")
    assert code == 1 and "1 failed" in out and "failed: base/t: boom" in err
