"""Configs at the edge (issue 12, "Bad input"): every config is checked by a schema, with one error format.

* hyperparameter YAML, method configs, benchmark grids (every nested section), task YAML and relevance maps:
  wrong types, nulls, unknown keys and values out of range at any depth are one line,
  `<file>: <dotted.field>: <what is wrong> (got <value>; allowed: ...)` (unknown keys: did you mean), exit 2;
* a benchmark `name` cannot climb out of the working folder;
* hyperparameters that leave no answer token to train on fail before training;
* `data export` and the JSONL/CSV readers share one limit: export refuses what could not be read back, CSV reads
  what JSONL reads (the csv module's 131072-character cell limit no longer decides).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from helpers import run_cli, toy_task
from loralab.recipes.evaluate import export_task
from loralab.bench import bench_from_mapping
from loralab.bench.grid import BenchConfig, EvalSpec, LibrarySpec, Resources
from loralab.data import Example, Task, load_csv_task, load_jsonl_task, load_task
from loralab.data.schema import MAX_TEXT_CHARS
from loralab.errors import ConfigError, TaskFormatError
from loralab.library import LoRAHparams, load_hparams
from loralab.moe.registry import all_methods
from loralab.selection import all_selectors
from loralab.utils.config import check, from_mapping

# `<where>: <dotted.field>: <problem> (got <value>; allowed: <what>)`
UNIFORM = re.compile(r"^(?P<where>[^:]+): (?P<field>[\w.\[\]' ]+): (?P<problem>[^(]+?) \(got (?P<got>.+); "
                     r"allowed: (?P<allowed>.+)\)$")


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


def uniform(exc: BaseException, where: str, field: str, got: str | None = None) -> re.Match:
    """The message is in the uniform format, names `where` and `field` (and the value when given)."""
    match = UNIFORM.match(one_line(exc))
    assert match, str(exc)
    assert match["where"].endswith(where) and match["field"] == field, (match.groupdict(), where, field)
    if got is not None:
        assert match["got"] == got, (match["got"], got)
    return match


# ------------------------------------------------------------------------------------------------ task files


def _records(name: str, n: int = 24) -> str:
    rows = []
    for i in range(n):
        rec = {"prompt": f"Q: {name} {i}?\nA:", "choices": [" yes", " no"], "answer_index": i % 2,
               "split": "test" if i % 3 == 0 else "train"}
        rows.append(json.dumps(rec) + "\n")
    return "".join(rows)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("schema-tasks")
    out = {}
    for name in ("alpha", "beta", "gamma"):
        path = folder / f"{name}.jsonl"
        path.write_text(_records(name), encoding="utf-8")
        out[name] = str(path)
    return out


def grid(tasks: dict[str, str], **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "schema", "models": ["tiny-llama"], "methods": ["base", "loramoe"], "targets": [tasks["alpha"]],
        "library": {"tasks": list(tasks.values()), "hparams": {"max_steps": 1, "max_length": 64}},
        "strategies": ["random", "manual"], "k": [1], "seeds": [0],
        "train": {"max_steps": 1, "batch_size": 2}, "eval": {"limit": 4}, "device": "cpu",
        "selection": {"manual": {"relevance": {"alpha": ["beta"]}}},
    }
    data.update(changes)
    return data


# ------------------------------------------------------------------------------------------------ 1. schema


@pytest.mark.parametrize("change, field, got, problem", [
    ({"models": None}, "models", "null", "null is not allowed"),
    ({"models": {"a": 1}}, "models", "{'a': 1}", "wrong type"),
    ({"models": ["tiny-llama", 3]}, "models[1]", "3", "wrong type"),
    ({"name": 7}, "name", "7", "wrong type"),
    ({"k": [1, None]}, "k[1]", "null", "null is not allowed"),
    ({"k": [1.5]}, "k[0]", "1.5", "wrong type"),
    ({"seeds": [True]}, "seeds[0]", "true", "wrong type"),
    ({"seeds": []}, "seeds", "[]", "must not be empty"),
    ({"library": [1, 2]}, "library", "[1, 2]", "wrong type"),
    ({"library": {"tasks": "not-a-list-but-ok", "eval_limit": -1}}, "library.eval_limit", "-1", "out of range"),
    ({"library": {"hparams": {"rank": None}}}, "library.hparams.rank", "null", "null is not allowed"),
    ({"library": {"hparams": 3}}, "library.hparams", "3", "wrong type"),
    ({"train": {"target_modules": [None]}}, "train.target_modules[0]", "null", "null is not allowed"),
    ({"train": {"learning_rate": "1e-3"}}, "train.learning_rate", "'1e-3'", "wrong type"),
    ({"train": {"dropout": float("nan")}}, "train.dropout", "nan", "not a finite number"),
    ({"train": {"scheduler": "cosin"}}, "train.scheduler", "'cosin'", "not an allowed value, did you mean 'cosine'?"),
    ({"eval": "test"}, "eval", "'test'", "wrong type"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size", "0", "out of range"),
    ({"resources": {"cpus": 0}}, "resources.cpus", "0", "out of range"),
    ({"resources": {"gpus": None}}, "resources.gpus", "null", "null is not allowed"),
    ({"selection": [1]}, "selection", "[1]", "wrong type"),
    ({"selection": {"manual": None}}, "selection.manual", "null", "null is not allowed"),
    ({"selection": {"manual": {"relevance": 5}}}, "selection.manual.relevance", "5", "wrong type"),
    ({"selection": {"manual": {"relevance": {"alpha": [None]}}}}, "selection.manual.relevance.alpha[0]", "null",
     "null is not allowed"),
    ({"selection": {"manual": {"relevance": {"alpha": {"beta": "high"}}}}}, "selection.manual.relevance.alpha.beta",
     "'high'", "wrong type"),
    ({"method_config": {"loramoe": None}}, "method_config.loramoe", "null", "null is not allowed"),
    ({"method_config": {"loramoe": {"num_experts": "4"}}}, "method_config.loramoe.num_experts", "'4'", "wrong type"),
    ({"method_config": {"loramoe": {"targets": {"a": 1}}}}, "method_config.loramoe.targets", "{'a': 1}",
     "wrong type"),
    ({"keep_checkpoints": "yes"}, "keep_checkpoints", "'yes'", "wrong type"),
    ({"device": ["cpu"]}, "device", "['cpu']", "wrong type"),
    ({"data_dir": 5}, "data_dir", "5", "wrong type"),
])
def test_bench_schema_errors_name_the_dotted_field(tasks, change, field, got, problem):
    with pytest.raises(ConfigError) as info:
        bench_from_mapping(grid(tasks, **change), where="grid.yaml")
    assert uniform(info.value, "grid.yaml", field, got)["problem"] == problem


@pytest.mark.parametrize("change, needle", [
    ({"trian": {}}, "grid.yaml: unknown key 'trian' (did you mean 'train'?); allowed: claims, data_dir, device, eval,"),
    ({"library": {"hparms": {}}}, "grid.yaml: library: unknown key 'hparms' (did you mean 'hparams'?); allowed:"),
    ({"library": {"hparams": {"rnak": 2}}}, "grid.yaml: library.hparams: unknown key 'rnak' (did you mean 'rank'?)"),
    ({"eval": {"limt": 2}},
     "grid.yaml: eval: unknown key 'limt' (did you mean 'limit'?); allowed: apply_chat_template, batch_size"),
    ({"resources": {"gpu": 1}}, "grid.yaml: resources: unknown key 'gpu' (did you mean 'gpus'?)"),
    ({"selection": {"manual": {"relevence": {}}}}, "grid.yaml: selection.manual: unknown key 'relevence' "
                                                    "(did you mean 'relevance'?)"),
    ({"method_config": {"loramoe": {"num_expert": 2}}}, "grid.yaml: method_config.loramoe: unknown key "
                                                         "'num_expert' (did you mean 'num_experts'?)"),
])
def test_unknown_keys_at_every_depth_suggest_the_right_one(tasks, change, needle):
    with pytest.raises(ConfigError) as info:
        bench_from_mapping(grid(tasks, **change), where="grid.yaml")
    assert one_line(info.value).startswith(needle), (needle, str(info.value))


def test_missing_required_keys_are_listed(tasks):
    data = grid(tasks)
    del data["models"], data["targets"]
    with pytest.raises(ConfigError, match=r"^grid.yaml: missing required key\(s\) models, targets$"):
        bench_from_mapping(data, where="grid.yaml")


def test_cli_reports_schema_errors_in_one_line_and_writes_nothing(tasks, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(grid(tasks, library={"hparams": {"batch_size": None}})), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "bench", str(config))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == [f"error: {config}: library.hparams.batch_size: null is not allowed (got null; "
                                   "allowed: an integer >= 1)"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


def test_hyperparameter_file_and_options(tmp_path):
    path = tmp_path / "hp.yaml"
    path.write_text("rank: 4\ntarget_modules: [q_proj, 7]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_hparams(path)
    uniform(info.value, "hp.yaml", "target_modules[1]", "7")
    path.write_text("rank: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # an override from the command line is named as an option
        load_hparams(path, max_steps=-3)
    uniform(info.value, "options", "max_steps", "-3")
    path.write_text("rank: 4\nseed: -1\n", encoding="utf-8")  # numpy seeds are 0..2**32-1: refused now, not at step 0
    with pytest.raises(ConfigError, match=r"seed: out of range \(got -1; allowed: an integer >= 0 and <= 4294967295"):
        load_hparams(path)


def test_direct_construction_uses_the_same_declared_limits():
    with pytest.raises(ConfigError) as info:
        LoRAHparams(weight_decay=-0.1)  # AdamW would refuse it only once training starts
    assert one_line(info.value) == "weight_decay: out of range (got -0.1; allowed: a number >= 0)"
    assert LoRAHparams(alpha=3).replace(rank=2).rank == 2


def test_task_yaml_schema(tmp_path, tasks):
    path = tmp_path / "t.yaml"

    def error(text: str) -> str:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(TaskFormatError) as info:
            load_task(str(path))
        return one_line(info.value)

    assert error(f"source: jsonl\npath: {tasks['alpha']}\ndomain: [logic]\n").endswith(
        "t.yaml: domain: wrong type (got ['logic']; allowed: a string or null)")
    assert error("source: hf\npath: x\nchoices: c\nanswer: a\nsplits: {train: 5}\n").endswith(
        "t.yaml: splits.train: wrong type (got 5; allowed: a string)")
    assert error("source: hf\npath: x\nprompt: p\nchoices: c\nanswer: a\nchoice_format: '{0}{1}'\n").startswith(
        f"{path}: choice_format: not a template of one choice (got '{{0}}{{1}}'")
    assert error("source: hf\npath: x\nchoices: c\nanswer: a\n").endswith("missing required key(s) prompt "
                                                                          "(source 'hf' needs a prompt template over "
                                                                          "the dataset's columns)")
    assert error(f"source: jsonl\npath: {tasks['alpha']}\ngeneration: {{max_new_tokens: 0}}\n").startswith(
        f"{path}: generation.max_new_tokens must be an integer >= 1")
    assert error("source: jsonl\npath: \"a\\0b\"\n").startswith(f"{path}: path: contains a NUL character")
    path.write_text(f"source: jsonl\npath: {tasks['alpha']}\nname: renamed\ndomain: logic\n", encoding="utf-8")
    task = load_task(str(path))
    assert (task.name, task.domain) == ("renamed", "logic")


def test_method_config_from_a_file_names_the_file(tmp_path, monkeypatch, capsys):
    config = tmp_path / "moe.yaml"
    config.write_text("num_experts: [4]\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "loramoe", "--model", "tiny-llama", "--task",
                           "whatever", "--out", str(tmp_path / "out"), "--config", str(config))
    assert code == 2 and err.strip() == (f"error: {config}: num_experts: wrong type (got [4]; allowed: an integer)")
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "loramoe", "--model", "tiny-llama", "--tasks",
                           "whatever", "--out", str(tmp_path / "out"), "--method-config", str(config))  # new spellings
    assert code == 2 and err.strip() == (f"error: {config}: num_experts: wrong type (got [4]; allowed: an integer)")
    assert not (tmp_path / "out").exists()


def _takes_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _takes_mapping(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_mapping(a) for a in typing.get_args(hint))
    return hint in (dict, Mapping) or origin in (dict, Mapping) or dataclasses.is_dataclass(hint)


def _wrong_value(hint: Any) -> Any:
    """A value no field of this hint accepts: a mapping for scalars and lists, a list for mappings."""
    return [1] if _takes_mapping(hint) else {"not": "this"}


def _config_classes() -> list[type]:
    classes = [LoRAHparams, EvalSpec, Resources, LibrarySpec, BenchConfig]
    classes += sorted({spec.config_cls for spec in all_methods().values()}, key=lambda c: c.__name__)
    classes += sorted({cls.config_cls for cls in all_selectors().values()}, key=lambda c: c.__name__)
    return classes


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_field_of_every_config_rejects_a_wrong_type_in_the_uniform_format(cls):
    """Generic over the dataclasses: no field is left unchecked (types come from the hints, not per-field code)."""
    hints = typing.get_type_hints(cls)
    required = {"models": ["m"], "methods": ["x"], "targets": ["t"]} if cls is BenchConfig else {}
    for f in dataclasses.fields(cls):
        hint = f.metadata.get("schema", hints[f.name])
        if hint is Any:
            continue
        bad = _wrong_value(hint)
        with pytest.raises(ConfigError) as info:
            check(cls, {**required, f.name: bad}, "cfg.yaml")
        match = uniform(info.value, "cfg.yaml", f.name)
        assert match["problem"] in ("wrong type", "null is not allowed"), (f.name, str(info.value))
        if not (typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)):
            with pytest.raises(ConfigError, match=r"null is not allowed \(got null;"):
                check(cls, {**required, f.name: None}, "cfg.yaml")


def test_from_mapping_keeps_cross_field_errors_in_one_line():
    from loralab.moe.methods.mixlora import MixLoRAConfig

    with pytest.raises(ConfigError) as info:
        from_mapping(MixLoRAConfig, {"top_k": 5, "num_experts": 4}, "moe.yaml", at=("method_config", "mixlora"))
    assert one_line(info.value).startswith("moe.yaml: method_config.mixlora: ") and "top_k=5" in str(info.value)


# ------------------------------------------------------------------------------------------------ 2. names


@pytest.mark.parametrize("name", ["../../evil", "..", "a/b", "a\\b", ".hidden", "a..b", "x" * 101, "", "a b",
                                  "trailing."])
def test_bench_name_cannot_leave_the_working_folder(tasks, tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(grid(tasks, name=name)), encoding="utf-8")
    before = sorted(str(p) for p in tmp_path.parent.rglob("*"))
    code, _, err = run_cli(monkeypatch, capsys, "bench", str(config))
    assert code == 2 and err.startswith(f"error: {config}: name: "), err
    assert "allowed: letters, digits, '_', '-' and single dots inside" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(str(p) for p in tmp_path.parent.rglob("*")) == before  # nothing here, nothing above


@pytest.mark.parametrize("name", ["quickstart", "v1.2_run-3", "A", "x" * 100])
def test_bench_safe_names_are_accepted(tasks, name):
    assert bench_from_mapping(grid(tasks, name=name)).config.name == name


# ------------------------------------------------------------------------------------------------ 3. no answer


def test_max_length_leaving_no_answer_token_fails_before_training(tasks, tmp_path, monkeypatch, capsys):
    config = tmp_path / "hp.yaml"
    config.write_text("max_length: 1\nmax_steps: 1\n", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks",
                           tasks["alpha"], "--out", str(tmp_path / "lib"), "--config", str(config))
    assert code == 2 and err.strip() == (f"error: {config}: max_length: out of range (got 1; allowed: an integer >= 2 "
                                         "(at least one prompt and one answer token))"), err
    assert not (tmp_path / "lib").exists()
    with pytest.raises(ConfigError, match="max_length: out of range"):
        bench_from_mapping(grid(tasks, train={"max_length": 1}))


def test_shortest_max_length_still_trains_one_answer_token():
    from loralab.training.trainer import IGNORE, training_features
    from loralab.models import build_tiny_model

    lm = build_tiny_model("llama")
    for f in training_features(toy_task("t", n=8), lm.tokenizer, LoRAHparams(max_length=2)):
        assert len(f["input_ids"]) == 2 and f["labels"][0] == IGNORE and f["labels"][1] != IGNORE


def test_an_answer_without_tokens_is_refused_where_the_batch_is_built():
    """An empty target and a tokenizer without EOS: every label would be masked (a NaN loss at step 1)."""
    import copy

    from loralab.training.trainer import training_features
    from loralab.models import build_tiny_model

    tokenizer = copy.deepcopy(build_tiny_model("llama").tokenizer)
    tokenizer.eos_token = None
    assert tokenizer.eos_token_id is None
    task = Task(name="empty", kind="generation", examples=[Example(id="e0", body="Q:", targets=("",), split="train")],
                metric="exact_match")
    with pytest.raises(TaskFormatError) as info:
        training_features(task, tokenizer, LoRAHparams())
    assert one_line(info.value) == "task 'empty', example 'e0': its answer '' has no token to train on"


# ------------------------------------------------------------------------------------------------ 4. one limit


def _csv(rec: dict[str, Any]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(list(rec))
    writer.writerow([v if isinstance(v, str) else json.dumps(v) for v in rec.values()])
    return buf.getvalue()


@pytest.mark.parametrize("chars", [131_073, MAX_TEXT_CHARS])
def test_csv_reads_what_jsonl_reads_up_to_the_one_limit(tmp_path, chars):
    """Was: CSV refused any cell over the csv module's 131072 characters while JSONL took 200000."""
    rec = {"prompt": "p" * chars, "choices": [" a", " b"], "answer_index": 0}
    (tmp_path / "t.csv").write_text(_csv(rec), encoding="utf-8")
    (tmp_path / "t.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    assert load_csv_task(tmp_path / "t.csv").examples == load_jsonl_task(tmp_path / "t.jsonl").examples
    import csv as csv_module

    assert csv_module.field_size_limit() == 131_072  # the process-wide limit is restored


def test_csv_over_the_limit_is_refused_as_jsonl_is(tmp_path):
    rec = {"prompt": "p" * (MAX_TEXT_CHARS + 1), "targets": ["x"]}
    (tmp_path / "t.csv").write_text(_csv(rec), encoding="utf-8")
    (tmp_path / "t.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    messages = []
    for path in (tmp_path / "t.csv", tmp_path / "t.jsonl"):
        with pytest.raises(TaskFormatError) as info:
            load_task(str(path))
        messages.append(one_line(info.value).split(": ", 1)[1])
    assert messages[0] == messages[1] == f"'prompt' has {MAX_TEXT_CHARS + 1} characters; the limit is {MAX_TEXT_CHARS}"


def _long_task(prompt_chars: int, n: int = 4) -> Task:
    examples = [Example(id=f"e{i}", body="x" * (prompt_chars - 4) + f"Q{i}:", choices=(" a", " b"), answers=(0,),
                        split="test" if i == 0 else "train") for i in range(n)]
    return Task(name="long", kind="multiple_choice", examples=examples)


def test_export_at_the_limit_reads_back(tmp_path):
    task = _long_task(MAX_TEXT_CHARS)
    out = tmp_path / "t.jsonl"
    assert export_task(task, out, split="all") == 4
    back = load_task(str(out))
    assert [(e.id, e.prompt) for e in back.split("all")] == [(e.id, e.prompt) for e in task.split("all")]


def test_export_refuses_what_could_not_be_read_back(tmp_path):
    """Few-shot demonstrations make a prompt the reader would refuse: refused when written, nothing written."""
    task = _long_task(MAX_TEXT_CHARS // 2 - 10)
    out = tmp_path / "fs.jsonl"
    with pytest.raises(TaskFormatError) as info:
        export_task(task, out, split="test", num_fewshot=2)
    message = one_line(info.value)
    assert message.startswith(f"cannot export to {out}: record 1 (id 'e0'): 'prompt' has ")
    assert message.endswith(f"characters; the limit is {MAX_TEXT_CHARS} (a file with it could not be read back)")
    assert list(tmp_path.iterdir()) == []
    assert export_task(task, out, split="test", num_fewshot=1) == 1  # one demonstration fits
    assert load_task(str(out)).examples[0].prompt.count("Q") == 2


def test_export_writes_strict_json_that_reads_back(tmp_path):
    """NaN in metadata: written as null (strict JSON), so the file reads back; a lone surrogate is refused."""
    ok = Task(name="m", kind="multiple_choice", examples=[
        Example(id="a", body="Q:", choices=(" a", " b"), answers=(0,), metadata={"score": float("nan")})])
    assert export_task(ok, tmp_path / "m.jsonl", split="all") == 1
    assert "NaN" not in (tmp_path / "m.jsonl").read_text(encoding="utf-8")
    assert load_task(str(tmp_path / "m.jsonl")).examples[0].metadata == {"score": None}
    bad = Task(name="s", kind="multiple_choice", examples=[
        Example(id="a", body="Q:", choices=(" a", " b"), answers=(0,), metadata={"note": "\ud800"})])
    with pytest.raises(TaskFormatError, match=r"record 1 \(id 'a'\): text with a lone surrogate"):
        export_task(bad, tmp_path / "s.jsonl", split="all")
    assert not (tmp_path / "s.jsonl").exists()


def test_reader_refuses_nan_as_the_writer_never_writes_it(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "p", "targets": "x", "metadata": {"v": NaN}}\n', encoding="utf-8")
    with pytest.raises(TaskFormatError, match=r"t.jsonl:1: invalid JSON \(NaN is not JSON; use null"):
        load_task(str(path))


def test_cli_export_over_the_limit_is_one_line(tmp_path, monkeypatch, capsys):
    source = tmp_path / "long.jsonl"
    rows = [{"id": f"e{i}", "prompt": "x" * (MAX_TEXT_CHARS // 2) + f"Q{i}:", "choices": [" a", " b"],
             "answer_index": 0, "split": "test" if i == 0 else "train"} for i in range(4)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", str(source), "--out", str(out),
                           "--num-fewshot", "3")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: cannot export to {out}: record 1"), err
    assert not out.exists()

