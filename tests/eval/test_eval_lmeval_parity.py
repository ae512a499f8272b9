"""loralab's `acc` equals lm-evaluation-harness's on the exported prompts and choices (same model).

The task is a BIG-bench task file written here (never seen by either harness before); loralab exports
it with `loralab data export`, lm-eval reads the export as a local JSON task with `target_delimiter: ""`
(the continuation is the choice appended to the prompt, nothing in between), and both score the same
model object. The same number of examples must come out correct, example by example.
"""

from __future__ import annotations

import json
import random

import pytest

lm_eval = pytest.importorskip("lm_eval")

from loralab.recipes.evaluate import export_task, run_eval  # noqa: E402
from loralab.recipes.lmeval import task_yaml  # noqa: E402
from loralab.data import load_task  # noqa: E402
from loralab.models import build_tiny_model  # noqa: E402



def write_unseen_bigbench_task(path, n=40, seed=0):
    rng = random.Random(seed)
    colours = ["red", "green", "blue", "yellow", "purple"]
    examples = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        options = {str(a + b): 1, str(a + b + rng.randint(1, 9)): 0, colours[i % 5]: 0}
        examples.append({"input": f"What is {a} plus {b}?", "target_scores": options})
    task = {"name": "unseen_sums", "description": "sums", "keywords": [], "metrics": ["multiple_choice_grade"],
            "preferred_score": "multiple_choice_grade", "examples": examples}
    path.write_text(json.dumps(task), encoding="utf-8")


def lm_eval_per_doc(lm, export_file, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    task_dir = tmp_path / "lmeval_tasks"
    task_dir.mkdir()
    (task_dir / "loralab_export.yaml").write_text(task_yaml("loralab_export", export_file), encoding="utf-8")
    results = simple_evaluate(model=lm, tasks=["loralab_export"], task_manager=TaskManager(include_path=str(task_dir)),
                              log_samples=True, num_fewshot=0)
    samples = results["samples"]["loralab_export"]
    return results["results"]["loralab_export"]["acc,none"], {s["doc"]["id"]: s["acc"] for s in samples}


def hflm(model, tokenizer):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_acc_equals_lm_eval_on_exported_task(tmp_path, arch):
    task_file = tmp_path / "task.json"
    write_unseen_bigbench_task(task_file)
    export_file = tmp_path / "export.jsonl"
    export_task(str(task_file), export_file, split="all")
    lm = build_tiny_model(arch, seed=3)
    ours = run_eval(lm, str(export_file), split="all", log_samples=True, progress=False)
    theirs_acc, theirs = lm_eval_per_doc(hflm(lm.model, lm.tokenizer), export_file, tmp_path)
    mine = {s["id"]: float(s["predictions"]["acc"] in s["answers"]) for s in ours["samples"]}
    assert mine == theirs
    assert ours["metrics"]["acc"] == pytest.approx(theirs_acc)


def test_export_scores_the_same_as_the_original(tmp_path):
    task_file = tmp_path / "task.json"
    write_unseen_bigbench_task(task_file, n=20)
    export_file = tmp_path / "export.jsonl"
    export_task(str(task_file), export_file, split="test")
    lm = build_tiny_model("llama", seed=2)
    original = run_eval(lm, str(task_file), split="test", progress=False)
    exported = run_eval(lm, str(export_file), split="test", progress=False)
    assert exported["n"] == original["n"] == len(load_task(str(task_file)).split("test"))
    assert exported["metrics"] == original["metrics"]


@pytest.mark.slow
def test_smollm2_acc_equals_lm_eval(tmp_path):
    from loralab.models import load_model

    task_file = tmp_path / "task.json"
    write_unseen_bigbench_task(task_file, n=60, seed=7)
    export_file = tmp_path / "export.jsonl"
    export_task(str(task_file), export_file, split="all")
    lm = load_model("smollm2-135m", device="cpu")
    ours = run_eval(lm, str(export_file), split="all", log_samples=True, progress=False)
    theirs_acc, theirs = lm_eval_per_doc(hflm(lm.model, lm.tokenizer), export_file, tmp_path)
    mine = {s["id"]: float(s["predictions"]["acc"] in s["answers"]) for s in ours["samples"]}
    assert sum(mine.values()) == sum(theirs.values())
    assert mine == theirs
