"""lm-eval's model type `loralab` (loralab.recipes.lmeval) scores like `loralab eval`.

A toy multiple-choice task is exported with `export_task` and read by lm-eval as a local JSON task
(`target_delimiter: ""`, as in test_eval_lmeval_parity.py). `lm_eval.simple_evaluate(model="loralab", ...)`
must give the same per-document accuracy as loralab's own `run_eval` for a base model, a PEFT adapter and
method checkpoints (LoRAMoE, MOELoRA routed by task, X-LoRA over two LoRAs), and the command line wrapper
`python -m loralab.recipes.lmeval` must find the model type.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from helpers import toy_task  # noqa: E402

import loralab.recipes.lmeval  # noqa: E402,F401  (registers model="loralab")
from loralab.recipes.evaluate import export_task, run_eval  # noqa: E402
from loralab.data import Example, Task  # noqa: E402
from loralab.errors import AdapterError, UserInputError  # noqa: E402
from loralab.recipes.lmeval import LoralabLM, task_yaml  # noqa: E402
from loralab.models import build_tiny_model  # noqa: E402

TASK = "loralab_toy_export"


def sums_task(n: int = 30, seed: int = 0) -> Task:
    """Three unlike choices per question, the answer at a random position (a random model gets some right)."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        choices = [f" {a + b}", f" {a + b + rng.randint(1, 9)}", rng.choice([" red", " green", " blue sky"])]
        rng.shuffle(choices)
        examples.append(Example(id=f"s{i:03d}", body=f"What is {a} plus {b}?\nAnswer:", choices=tuple(choices),
                                answers=(choices.index(f" {a + b}"),), split="test"))
    return Task(name="sums", kind="multiple_choice", examples=examples, metric="acc")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(export jsonl, lm-eval TaskManager that knows the MC task and a generation task over 3 docs)."""
    from lm_eval.tasks import TaskManager

    root = tmp_path_factory.mktemp("lmeval-model")
    export_file = root / "toy.jsonl"
    export_task(sums_task(), export_file, split="test")
    gen_file = root / "gen.jsonl"
    export_task(toy_task("g", n=12, kind="generation"), gen_file, split="test")
    task_dir = root / "tasks"
    task_dir.mkdir()
    (task_dir / f"{TASK}.yaml").write_text(task_yaml(TASK, export_file), encoding="utf-8")
    (task_dir / "loralab_toy_gen.yaml").write_text(
        task_yaml("loralab_toy_gen", gen_file, kind="generation", max_gen_toks=4), encoding="utf-8")
    return export_file, TaskManager(include_path=str(task_dir)), task_dir


@pytest.fixture(scope="module")
def peft_adapters(tmp_path_factory):
    """Two PEFT LoRAs (non-zero B) on every linear of tiny-llama (seed 0, what `pretrained=tiny-llama` loads)."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for i in range(2):
        lm = build_tiny_model("llama", seed=0)
        torch.manual_seed(10 + i)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        path = tmp_path_factory.mktemp(f"peft{i}")
        get_peft_model(lm.model, config).save_pretrained(str(path))
        paths.append(path)
    return paths


CONFIGS = {"loramoe": {"num_experts": 3, "rank": 2, "targets": "all"},  # token-routed, trained from scratch
           "moelora": {"num_experts": 2, "rank": 4},  # routed by task only
           "xlora": {}}  # over the two PEFT LoRAs


def method_checkpoint(method, path, peft_adapters, tasks=("t0",)):
    """A saved method checkpoint around tiny-llama with perturbed (non-trivial) adapter tensors."""
    from loralab.moe.experts import load_lora_dir
    from loralab.moe.registry import get_method

    spec = get_method(method)
    lm = build_tiny_model("llama", seed=0)
    torch.manual_seed(0)  # routers / classifiers are initialised from the global RNG
    experts = [load_lora_dir(p, task=f"expert{i}") for i, p in enumerate(peft_adapters)] if method == "xlora" else None
    moe = spec.build(lm.model, spec.config_cls(**CONFIGS[method]), experts, list(tasks))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in moe.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    moe.save_pretrained(path)
    return path


def lm_eval_run(exported, model_args, task=TASK, **kwargs):
    _, task_manager, _ = exported
    results = lm_eval.simple_evaluate(model="loralab", model_args=model_args, tasks=[task], task_manager=task_manager,
                                      log_samples=True, num_fewshot=0, batch_size=4, device="cpu", **kwargs)
    samples = results["samples"][task]
    return results, {s["doc"]["id"]: s.get("acc") for s in samples}


def logliks(results, task=TASK):
    return {s["doc"]["id"]: [r[0] for r in s["filtered_resps"]] for s in results["samples"][task]}


def ours(export_file, adapter=None):
    record = run_eval(build_tiny_model("llama", seed=0), str(export_file), split="all", adapter=adapter,
                      log_samples=True, progress=False)
    per_doc = {s["id"]: float(s["predictions"]["acc"] in s["answers"]) for s in record["samples"]}
    return record["metrics"]["acc"], per_doc


def assert_same(exported, model_args, adapter=None):
    results, theirs = lm_eval_run(exported, model_args)
    acc, mine = ours(exported[0], adapter)
    assert len(mine) == 30
    assert 0 < acc < 1  # a comparison that all-right or all-wrong would pass trivially
    assert mine == theirs
    assert results["results"][TASK]["acc,none"] == pytest.approx(acc)
    return results


@pytest.fixture(scope="module")
def base_results(exported):
    return assert_same(exported, "pretrained=tiny-llama")


def test_base_model_scores_like_loralab_eval(base_results):
    assert base_results["config"]["model"] == "loralab"
    assert base_results["config"]["loralab_model"] == "tiny-llama"


def test_peft_adapter_scores_like_loralab_eval(exported, peft_adapters, base_results):
    results = assert_same(exported, f"pretrained=tiny-llama,adapter={peft_adapters[0]}", adapter=peft_adapters[0])
    assert logliks(results) != logliks(base_results)  # the adapter was applied
    # lm-eval's own name for it works too
    _, theirs = lm_eval_run(exported, {"pretrained": "tiny-llama", "peft": str(peft_adapters[0])})
    assert theirs == ours(exported[0], peft_adapters[0])[1]



@pytest.mark.parametrize("method", ["loramoe", "moelora", "xlora"])
def test_method_checkpoint_scores_like_loralab_eval(exported, peft_adapters, base_results, tmp_path, method):
    # trained on a task named like the export, so `loralab eval` routes a task-routed method by it too
    ckpt = method_checkpoint(method, tmp_path / method, peft_adapters, tasks=(exported[0].stem,))
    results = assert_same(exported, f"pretrained=tiny-llama,adapter={ckpt}", adapter=ckpt)
    assert logliks(results) != logliks(base_results)  # the method was applied
    assert results["config"]["loralab_method"] == method
    assert results["config"]["loralab_routing_task"] == exported[0].stem  # the only training task


@pytest.mark.parametrize("method", ["loramoe", "moelora", "xlora"])
def test_method_logliks_equal_whole_sequence_scoring(exported, peft_adapters, tmp_path, method):
    """lm-eval's log-likelihoods on a method checkpoint equal scoring each prompt + choice as one sequence."""
    from loralab.moe.adapters import attach_adapter
    from loralab.data import load_task
    from loralab.eval.loglik import LoglikScorer

    ckpt = method_checkpoint(method, tmp_path / method, peft_adapters)
    results, _ = lm_eval_run(exported, f"pretrained=tiny-llama,adapter={ckpt}")
    lm = build_tiny_model("llama", seed=0)
    net = attach_adapter(lm.model, ckpt)
    scorer = LoglikScorer(net, lm.tokenizer)
    task = load_task(str(exported[0]))
    theirs = logliks(results)
    with net.routing(task=net.tasks[0], record=False):  # what lm-eval's side does for a one-task checkpoint
        for ex in task.split("all"):
            pairs = [scorer.encode_pair(ex.prompt, c) for c in ex.choices]
            assert scorer._score_separately(pairs).logliks == pytest.approx(theirs[ex.id], rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("method", ["loramoe", "moelora", "xlora"])
def test_method_checkpoint_generates(exported, peft_adapters, tmp_path, method):
    """generate_until goes through MoEModel.generate (X-LoRA: scaling pass with its own cache)."""
    ckpt = method_checkpoint(method, tmp_path / method, peft_adapters)
    results, _ = lm_eval_run(exported, f"pretrained=tiny-llama,adapter={ckpt}", task="loralab_toy_gen")
    samples = results["samples"]["loralab_toy_gen"]
    assert len(samples) == 3
    assert all(isinstance(s["resps"][0][0], str) for s in samples)


def test_task_routing_argument(peft_adapters, tmp_path):
    """A task-routed method (MOELoRA) trained on two tasks needs task=, and routes by the one given."""
    ckpt = method_checkpoint("moelora", tmp_path / "multi", peft_adapters, tasks=("t0", "t1"))
    with pytest.raises(UserInputError, match="routes by task: add task=<one of t0, t1>"):
        LoralabLM(pretrained="tiny-llama", adapter=str(ckpt), device="cpu")
    with pytest.raises(AdapterError, match="trained on tasks"):
        LoralabLM(pretrained="tiny-llama", adapter=str(ckpt), task="nope", device="cpu")
    ids = torch.tensor([[5, 6, 7, 8]])
    outputs = {}
    for task in ("t0", "t1"):
        lm = LoralabLM(pretrained="tiny-llama", adapter=str(ckpt), task=task, device="cpu")
        assert lm.model.state.default_task_id == int(task[1]) and lm.model.state.record is False
        assert lm.get_model_info()["loralab_routing_task"] == task
        outputs[task] = lm._model_call(ids)
    assert not torch.allclose(outputs["t0"], outputs["t1"])  # each task has its own gate
    with pytest.raises(UserInputError, match="only applies to loralab method checkpoints"):
        LoralabLM(pretrained="tiny-llama", adapter=str(peft_adapters[0]), task="t0", device="cpu")


def test_precision_model_arg_defaults_to_fp32_and_autocasts_otherwise(exported, base_results):
    """precision= is loralab's `--precision`; its default is fp32 (not auto), so the parity above stays exact."""
    from loralab.errors import ConfigError

    assert base_results["config"]["loralab_precision"] == "fp32"
    results, _ = lm_eval_run(exported, "pretrained=tiny-llama,precision=fp32")
    assert logliks(results) == logliks(base_results)
    ids = torch.tensor([[5, 6, 7, 8]])
    plain = LoralabLM(pretrained="tiny-llama", device="cpu")
    bf16 = LoralabLM(pretrained="tiny-llama", device="cpu", precision="bf16")
    assert plain.precision.name == "fp32" and plain._model_call(ids).dtype == torch.float32
    assert bf16.get_model_info()["loralab_precision"] == "bf16" and bf16._model_call(ids).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast, not cast weights
    with pytest.raises(UserInputError, match="mixed_precision_dtype= is HFLM's; .* takes precision="):
        LoralabLM(pretrained="tiny-llama", device="cpu", mixed_precision_dtype="bfloat16")
    with pytest.raises(ConfigError, match="precision: 'half' is not one of auto, fp32, bf16, fp16"):
        LoralabLM(pretrained="tiny-llama", device="cpu", precision="half")


def test_token_routed_checkpoint_needs_no_task(peft_adapters, tmp_path):
    ckpt = method_checkpoint("loramoe", tmp_path / "multi", peft_adapters, tasks=("t0", "t1"))
    lm = LoralabLM(pretrained="tiny-llama", adapter=str(ckpt), device="cpu")
    assert lm.model.state.default_task_id is None and lm.routing_task is None


def test_bad_model_args_are_one_line_errors(peft_adapters):
    with pytest.raises(UserInputError, match="delta= is not supported"):
        LoralabLM(pretrained="tiny-llama", delta="x")
    with pytest.raises(UserInputError, match="adapter= .* not both"):
        LoralabLM(pretrained="tiny-llama", adapter=str(peft_adapters[0]), peft=str(peft_adapters[1]))
    with pytest.raises(AdapterError, match="does not exist"):
        LoralabLM(pretrained="tiny-llama", adapter="/no/such/adapter")


def test_command_line_wrapper(exported, tmp_path):
    """`python -m loralab.recipes.lmeval` is lm-eval's CLI with model type `loralab` registered (in a fresh process)."""
    export_file, _, task_dir = exported
    out = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "loralab.recipes.lmeval", "--model", "loralab", "--model_args", "pretrained=tiny-llama",
         "--tasks", TASK, "--include_path", str(task_dir), "--device", "cpu", "--batch_size", "4",
         "--output_path", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.rglob("results_*.json"))
    assert len(files) == 1
    acc = json.loads(files[0].read_text())["results"][TASK]["acc,none"]
    assert acc == pytest.approx(ours(export_file)[0])
