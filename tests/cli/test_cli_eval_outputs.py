"""`eval`'s readable outputs and the chat-template protocol: `--apply-chat-template` (lm-eval's flag),
`--log-samples` records, the adapter in the table header, and `str(task)`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import run_cli, toy_task

from loralab.data import load_task
from loralab.eval import evaluate
from loralab.models import build_tiny_model, load_model
from loralab.recipes.evaluate import export_task

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def chat(prompt: str) -> str:
    return f"<|user|>{prompt}<|end|><|assistant|>"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """A tiny-llama folder whose tokenizer has a chat template (as an instruct model's has)."""
    folder = tmp_path_factory.mktemp("chat-model")
    lm = build_tiny_model("llama", seed=0)
    lm.model.save_pretrained(str(folder), safe_serialization=True)
    lm.tokenizer.chat_template = TEMPLATE
    lm.tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture
def mc_file(tmp_path) -> Path:
    path = tmp_path / "toy.jsonl"
    export_task(toy_task("toy"), path, split="all")
    return path


@pytest.fixture
def gen_file(tmp_path) -> Path:
    path = tmp_path / "gen.jsonl"
    export_task(toy_task("gen", kind="generation"), path, split="all")
    return path


def header(out: str) -> str:
    return out.splitlines()[0]


def test_apply_chat_template_renders_each_prompt_as_a_user_turn(monkeypatch, capsys, tmp_path, chat_model, mc_file):
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", str(chat_model), "--task", str(mc_file),
                                "--limit", "4", "--apply-chat-template", "--log-samples", "--out", str(out))
    assert code == 0, err
    assert header(stdout).endswith("adapter none, precision fp32, chat template)")
    record = json.loads(out.read_text())
    assert record["apply_chat_template"] is True
    assert record["chat_template_sha256"] == hashlib.sha256(TEMPLATE.encode()).hexdigest()
    task = load_task(str(mc_file))
    first = task.split("test", 4)[0]
    sample = record["samples"][0]
    assert sample["id"] == first.id and sample["prompt"] == chat(first.prompt)
    # the answer starts the assistant's turn: no delimiter before it (lm-eval drops its target_delimiter too)
    assert sample["choices"] == ["yes", "no"] and first.choices == (" yes", " no")


def test_without_the_flag_nothing_changes(monkeypatch, capsys, tmp_path, chat_model, mc_file):
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", str(chat_model), "--task", str(mc_file),
                                "--limit", "4", "--log-samples", "--out", str(out))
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["apply_chat_template"] is False and "chat_template_sha256" not in record
    assert "chat template" not in header(stdout)
    first = load_task(str(mc_file)).split("test", 4)[0]
    assert record["samples"][0]["prompt"] == first.prompt and record["samples"][0]["choices"] == [" yes", " no"]


def test_chat_scoring_is_scoring_the_rendered_strings(chat_model):
    """The flag changes the scored strings and nothing else: the same numbers as the rendered task scored plainly."""
    lm = load_model(str(chat_model))
    task = toy_task("toy")
    with_chat = evaluate(lm.model, lm.tokenizer, task, limit=6, log_samples=True, progress=False,
                         apply_chat_template=True)
    rendered = task.__class__(name="toy", kind=task.kind, metric=task.metric, examples=[
        ex.replace(body=chat(ex.prompt), prefix="", choices=tuple(c.lstrip() for c in ex.choices))
        for ex in task.examples])
    plain = evaluate(lm.model, lm.tokenizer, rendered, limit=6, log_samples=True, progress=False)
    assert [s["logliks"] for s in with_chat.samples] == [s["logliks"] for s in plain.samples]
    assert with_chat.metrics == plain.metrics
    without = evaluate(lm.model, lm.tokenizer, task, limit=6, log_samples=True, progress=False)
    assert [s["logliks"] for s in without.samples] != [s["logliks"] for s in with_chat.samples]


def test_chat_template_on_a_generation_task(monkeypatch, capsys, tmp_path, chat_model, gen_file):
    out = tmp_path / "r.json"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", str(chat_model), "--task", str(gen_file),
                           "--limit", "3", "--apply-chat-template", "--log-samples", "--out", str(out))
    assert code == 0, err
    first = load_task(str(gen_file)).split("test", 3)[0]
    sample = json.loads(out.read_text())["samples"][0]
    assert sample["prompt"] == chat(first.prompt) and sample["targets"] == list(first.targets)
    assert isinstance(sample["output"], str) and "exact_match" in sample


def test_a_model_without_a_chat_template_is_one_line(monkeypatch, capsys, tmp_path, mc_file):
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(mc_file),
                                "--apply-chat-template", "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and stdout == "", err
    assert "error: --apply-chat-template: the tokenizer of model 'tiny-llama' has no chat template" in err
    assert not out.exists()


def test_log_samples_records_what_was_scored_and_the_models_answer(monkeypatch, capsys, tmp_path, mc_file, gen_file):
    """As lm-eval's samples: the prompt, the choices and targets, the model's scores and picks or its output."""
    task = load_task(str(mc_file))
    out = tmp_path / "mc.json"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(mc_file), "--limit",
                           "3", "--log-samples", "--out", str(out))
    assert code == 0, err
    record = json.loads(out.read_text())
    for sample, ex in zip(record["samples"], task.split("test", 3), strict=True):
        assert sample["prompt"] == ex.prompt and sample["choices"] == list(ex.choices)
        assert sample["answers"] == list(ex.answers) and sample["targets"] == [ex.choices[i] for i in ex.answers]
        assert len(sample["logliks"]) == len(sample["mean_nlls"]) == 2
        assert set(sample["predictions"]) == {"acc", "acc_norm", "acc_ppl"}
        assert sample["acc"] == float(sample["predictions"]["acc"] in ex.answers)
    assert record["metrics"]["acc"] == sum(s["acc"] for s in record["samples"]) / 3
    out = tmp_path / "gen.json"
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(gen_file), "--limit",
                           "2", "--log-samples", "--out", str(out))
    assert code == 0, err
    gen = load_task(str(gen_file)).split("test", 2)
    samples = json.loads(out.read_text())["samples"]
    assert [s["prompt"] for s in samples] == [ex.prompt for ex in gen]
    assert all({"targets", "output", "answer", "exact_match"} <= set(s) for s in samples)
    # without the flag the result stays the size of its metrics
    code, _, _ = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(mc_file), "--limit", "3",
                         "--out", str(tmp_path / "plain.json"))
    assert code == 0 and "samples" not in json.loads((tmp_path / "plain.json").read_text())


def test_the_eval_table_says_which_adapter_was_applied(monkeypatch, capsys, tmp_path, mc_file):
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(mc_file),
                                "--limit", "2")
    assert code == 0, err
    assert header(stdout) == f"tiny-llama on toy (test, n=2, adapter none, precision fp32)"
    hp = tmp_path / "hp.yaml"
    hp.write_text("max_steps: 1\nbatch_size: 4\nrank: 4\n", encoding="utf-8")
    adapter = tmp_path / "ckpt"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--method", "multitask_lora", "--model", "tiny-llama",
                           "--tasks", str(mc_file), "--hparams", str(hp), "--out", str(adapter))
    assert code == 0, err
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(mc_file),
                                "--limit", "2", "--adapter", str(adapter))
    assert code == 0, err
    assert f"adapter {adapter}, precision fp32)" in header(stdout)


def test_str_of_a_task_is_one_line():
    task = toy_task("toy")
    task.source = "jsonl:toy.jsonl"
    text = str(task)
    assert text == ("toy: multiple_choice, metric acc, 48 examples (train 36, validation 0, test 12), "
                    "source jsonl:toy.jsonl")
    assert "\n" not in repr(task) and "Example(" not in repr(task) and "examples=48" in repr(task)
    assert task.split_sizes() == {"train": 36, "validation": 0, "test": 12}


def test_str_of_a_bigbench_task_is_one_line_too(data_dir):
    task = load_task("navigate", data_dir=data_dir)
    assert str(task).startswith("navigate: multiple_choice, metric acc, ") and "\n" not in str(task)
    assert repr(task).startswith("BigBenchTask(name='navigate'") and len(repr(task)) < 200
