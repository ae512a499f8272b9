"""A table of bad inputs at every edge: the exact error class, a one-line message naming the field or value, and
nothing written anywhere (every file under the test's folder, inputs included, is unchanged afterwards).

Python cases call the API that would write (export, build, import, eval, train); CLI cases run `loralab` and
expect exit code 2, exactly one `error:` line on stderr and no traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from helpers import run_cli, toy_task
from loralab.recipes.evaluate import export_task, run_eval
from loralab.data.schema import MAX_TEXT_CHARS
from loralab.errors import (
    AdapterError,
    ConfigError,
    EmptySplitError,
    ModelLoadError,
    TaskFormatError,
    UnknownNameError,
    UserInputError,
)
from loralab.library import LoRAHparams, build_library, import_adapter, load_hparams
from loralab.models import build_tiny_model
from loralab.recipes.train import train_method

LIB_HP = LoRAHparams(max_steps=2, batch_size=4, rank=4, learning_rate=1e-2)
CLI = "cli"  # expected "error" of a command-line case: exit code 2, one error line


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], Any]  # builds the inputs under the folder; returns the action (or CLI arguments)
    error: type[Exception] | str
    needle: str  # what the message must name (the field, the value, what is allowed)


CASES: dict[str, Case] = {}


def case(name: str, error: type[Exception] | str, needle: str):
    def register(setup: Callable[[Path], Any]) -> Callable[[Path], Any]:
        assert name not in CASES, name
        CASES[name] = Case(setup, error, needle)
        return setup

    return register


# ------------------------------------------------------------------------------------------------ inputs


def jl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


MC = {"prompt": "Q: one?\nA:", "choices": [" yes", " no"], "answer_index": 0}


def good_records(n: int = 12) -> str:
    return jl(*({"id": f"q{i}", "prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"], "answer_index": i % 2}
                for i in range(n)))


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def export_of(name: str, content: str | bytes) -> Callable[[Path], Callable[[], Any]]:
    """Export (a writing operation) of a task file with this content."""
    def setup(d: Path):
        path = write(d, name, content)
        return lambda: export_task(str(path), d / "out.jsonl", split="all")

    return setup


def save_peft_adapter(path: Path, arch: str = "llama", rank: int = 4, targets=("q_proj", "v_proj"), config=None):
    if config is not None:  # a base model of another shape
        model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=rank, target_modules=list(targets)))
    else:
        model = get_peft_model(build_tiny_model(arch).model, LoraConfig(r=rank, target_modules=list(targets),
                                                                     init_lora_weights=False))
    model.save_pretrained(str(path))
    return path


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def to_pickle(path: Path) -> Path:
    from safetensors.torch import load_file

    torch.save(load_file(str(path / "adapter_model.safetensors")), path / "adapter_model.bin")
    (path / "adapter_model.safetensors").unlink()
    return path


def import_into_library(make_adapter: Callable[[Path], Path], task: str = "alpha"):
    def setup(d: Path):
        adapter = make_adapter(d / "adapter")
        return lambda: import_adapter(d / "lib", adapter, toy_task(task, n=8), model="tiny-llama")

    return setup


def eval_with_adapter(make_adapter: Callable[[Path], Path]):
    def setup(d: Path):
        adapter = make_adapter(d / "adapter")
        task = write(d, "t.jsonl", good_records())
        return lambda: run_eval("tiny-llama", str(task), adapter=adapter, out=d / "result.json", progress=False)

    return setup


@pytest.fixture(scope="session")
def built_library(tmp_path_factory) -> Path:
    """A one-adapter library (tiny-llama, task alpha) that the tampering cases copy and modify."""
    root = tmp_path_factory.mktemp("lib") / "lib"
    build_library(build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], root, hparams=LIB_HP, eval_limit=0,
                  progress=False)
    return root


def use_tampered_library(tamper: Callable[[Path], None]):
    """`loralab train --method lora` copies the task's library LoRA (after checking its hashes) to --out."""

    def setup(d: Path):
        lib = d / "lib"
        shutil.copytree(d.parent / "_library", lib)
        tamper(lib / "tiny-llama" / "alpha")
        return lambda: train_method("lora", build_tiny_model("llama", seed=0), [toy_task("alpha", n=16)], d / "out",
                                    library=lib, hparams=LIB_HP, progress=False)

    return setup


def build_with_config(yaml_text: str | bytes | None):
    def setup(d: Path):
        task = write(d, "t.jsonl", good_records())
        cfg = d / "missing.yaml" if yaml_text is None else write(d, "hp.yaml", yaml_text)
        return lambda: build_library(build_tiny_model("llama"), [str(task)], d / "lib", hparams=load_hparams(cfg),
                                     eval_limit=0, progress=False)

    return setup


def train_with_method_config(method: str, config: dict[str, Any]):
    def setup(d: Path):
        return lambda: train_method(method, build_tiny_model("llama"), [toy_task("t0", n=8)], d / "out", config=config,
                                    hparams=LIB_HP, progress=False)

    return setup


# ------------------------------------------------------------------------------------------------ task files

case("jsonl_missing_prompt", TaskFormatError, "'prompt' must be a non-empty string, got None")(
    export_of("t.jsonl", jl({"targets": "x"})))
case("jsonl_choices_wrong_type", TaskFormatError, "'choices' must be a list of at least 2 strings, got 'ab'")(
    export_of("t.jsonl", jl({**MC, "choices": "ab"})))
case("jsonl_empty_choices", TaskFormatError, "'choices' must be a list of at least 2 strings, got []")(
    export_of("t.jsonl", jl({**MC, "choices": []})))
case("jsonl_no_correct_answer", TaskFormatError, "'answer_index' must be a non-negative int or a non-empty list")(
    export_of("t.jsonl", jl({**MC, "answer_index": []})))
case("jsonl_answer_out_of_range", TaskFormatError, "answer_index 2 out of range 0..1")(
    export_of("t.jsonl", jl({**MC, "answer_index": 2})))
case("jsonl_duplicate_ids", TaskFormatError, "duplicate id 'a'")(
    export_of("t.jsonl", jl({**MC, "id": "a"}, {**MC, "prompt": "other", "id": "a"})))
case("jsonl_invalid_utf8", TaskFormatError, "not valid UTF-8 (byte 12)")(
    export_of("t.jsonl", b'{"prompt": "\xff", "targets": "x"}\n'))
case("jsonl_huge_prompt", TaskFormatError, f"'prompt' has {MAX_TEXT_CHARS + 1} characters; the limit is 200000")(
    export_of("t.jsonl", jl({**MC, "prompt": "x" * (MAX_TEXT_CHARS + 1)})))
case("jsonl_huge_choice", TaskFormatError, f"a choice has {MAX_TEXT_CHARS + 1} characters; the limit is 200000")(
    export_of("t.jsonl", jl({**MC, "choices": ["a", "b" * (MAX_TEXT_CHARS + 1)]})))
case("jsonl_huge_target", TaskFormatError, f"a target has {MAX_TEXT_CHARS + 1} characters")(
    export_of("t.jsonl", jl({"prompt": "p", "targets": ["t" * (MAX_TEXT_CHARS + 1)]})))
case("jsonl_deeply_nested", TaskFormatError, "t.jsonl:1: JSON nested too deeply")(
    export_of("t.jsonl", '{"prompt": "p", "targets": "x", "metadata": ' + "[" * 100_000 + "\n"))
case("jsonl_unknown_field", TaskFormatError, "unknown field 'answer' (did you mean 'answer_index'?)")(
    export_of("t.jsonl", jl({**MC, "answer": 0})))
# CSV holds what JSONL holds: a prompt over the one text limit (not the csv module's 131072-character cell limit)
case("csv_huge_prompt", TaskFormatError, f"t.csv:2: 'prompt' has {MAX_TEXT_CHARS + 1} characters; the limit is 200000")(
    export_of("t.csv", 'prompt,targets\n"' + "x" * (MAX_TEXT_CHARS + 1) + '",y\n'))
case("csv_extra_cells", TaskFormatError, "t.csv:2: more cells than header columns")(
    export_of("t.csv", "prompt,targets\np,x,extra\n"))
case("bigbench_no_correct_answer", TaskFormatError, "examples[0]: no correct answer")(
    export_of("task.json", json.dumps({"examples": [{"input": "q", "target_scores": {"a": 0, "b": 0}}]})))
case("bigbench_empty_examples", TaskFormatError, "'examples' must be a non-empty list")(
    export_of("task.json", json.dumps({"examples": []})))
case("bigbench_deeply_nested", TaskFormatError, "task.json: JSON nested too deeply")(
    export_of("task.json", '{"examples": ' + "[" * 100_000))
case("yaml_unknown_key", TaskFormatError, "unknown key 'sorce' (did you mean 'source'?)")(
    export_of("t.yaml", "source: jsonl\npath: x.jsonl\nsorce: csv\n"))
case("yaml_deeply_nested", TaskFormatError, "t.yaml: YAML nested too deeply")(
    export_of("t.yaml", "source: " + "[" * 5000))
case("yaml_bad_source", TaskFormatError,
     "t.yaml: source: not an allowed value, did you mean 'jsonl'? (got 'jsnl'; allowed: 'bigbench', 'gsm8k', 'jsonl'")(
    export_of("t.yaml", "source: jsnl\npath: x.jsonl\n"))

case("yaml_path_is_a_folder", TaskFormatError, "cannot read the task file (Is a directory)")(
    export_of("t.yaml", "source: jsonl\npath: .\n"))


@case("task_empty_split", EmptySplitError, "task 't' has no examples in split 'test'")
def _(d: Path):
    task = write(d, "t.jsonl", jl({**MC, "split": "train"}))
    return lambda: export_task(str(task), d / "out.jsonl", split="test")


# ------------------------------------------------------------------------------------------------ configs

case("hparams_unknown_key", ConfigError, "unknown key 'rnak' (did you mean 'rank'?); allowed:")(
    build_with_config("rnak: 4\n"))
case("hparams_wrong_type", ConfigError, "hp.yaml: rank: wrong type (got 'eight'; allowed: an integer >= 1)")(
    build_with_config("rank: eight\n"))
case("hparams_bool_for_int", ConfigError, "batch_size: wrong type (got true; allowed: an integer >= 1)")(
    build_with_config("batch_size: true\n"))
case("hparams_impossible_dropout", ConfigError, "dropout: out of range (got 1.5; allowed: a number >= 0 and < 1)")(
    build_with_config("dropout: 1.5\n"))
case("hparams_zero_steps", ConfigError, "max_steps: out of range (got 0; allowed: an integer >= 1 or null)")(
    build_with_config("max_steps: 0\n"))
case("hparams_bad_scheduler", ConfigError, "scheduler: not an allowed value, did you mean 'cosine'? (got 'cosin'; "
     "allowed: 'linear', 'cosine'")(build_with_config("scheduler: cosin\n"))
case("hparams_not_a_mapping", ConfigError, "a config must be a mapping of keys to values, got list")(
    build_with_config("- rank: 4\n"))
case("hparams_deeply_nested", ConfigError, "YAML nested too deeply")(build_with_config("rank: " + "[" * 5000))
case("hparams_invalid_utf8", ConfigError, "not valid UTF-8 (byte 6)")(build_with_config(b"rank: \xff\n"))
case("hparams_missing_file", ConfigError, "config file does not exist:")(build_with_config(None))


@case("hparams_config_is_a_folder", ConfigError, "cannot read the config file (Is a directory)")
def _(d: Path):
    task = write(d, "t.jsonl", good_records())
    (d / "hp.yaml").mkdir()
    return lambda: build_library("tiny-llama", [str(task)], d / "lib", hparams=load_hparams(d / "hp.yaml"),
                                 eval_limit=0, progress=False)


case("method_top_k_over_experts", ConfigError, "top_k=5 is more than num_experts=4")(
    train_with_method_config("mixlora", {"top_k": 5, "num_experts": 4}))
case("method_rank_not_divisible", ConfigError, "must be divisible by num_experts, got rank=6 and num_experts=4")(
    train_with_method_config("moelora", {"rank": 6, "num_experts": 4}))
case("method_unknown_key", ConfigError, "unknown key 'num_expert' (did you mean 'num_experts'?)")(
    train_with_method_config("loramoe", {"num_expert": 4}))
case("method_wrong_type", ConfigError, "LoRAMoEConfig: num_experts: wrong type (got '4'; allowed: an integer)")(
    train_with_method_config("loramoe", {"num_experts": "4"}))


@case("method_unknown_name", UnknownNameError, "unknown method 'loramo'. Did you mean 'loramoe'")
def _(d: Path):
    return lambda: train_method("loramo", "tiny-llama", [toy_task("t0", n=8)], d / "out", progress=False)


# ------------------------------------------------------------------------------------------------ adapters

case("adapter_other_base_model", AdapterError, "targets 'transformer.h.0.attn.c_attn', which the base model does not")(
    import_into_library(lambda p: save_peft_adapter(p, arch="gpt2", targets=("c_attn",))))


def _wider_llama(path: Path) -> Path:
    from loralab.models import tiny_config

    config = tiny_config("llama")
    config.hidden_size, config.intermediate_size = 96, 160
    return save_peft_adapter(path, targets=("q_proj",), config=config)


case("adapter_shape_mismatch", AdapterError, "has shape (4, 96), the base model needs (4, 64)")(
    import_into_library(_wider_llama))
case("adapter_rank_mismatch", AdapterError, "the base model needs (16, 64) (rank 16)")(
    import_into_library(lambda p: (edit_json(save_peft_adapter(p) / "adapter_config.json", r=16), p)[1]))
case("adapter_rank_zero", AdapterError, "'r' must be a positive integer, got 0")(
    import_into_library(lambda p: (edit_json(save_peft_adapter(p) / "adapter_config.json", r=0), p)[1]))
case("adapter_missing_config", AdapterError, "no adapter_config.json (not a PEFT adapter)")(
    import_into_library(lambda p: ((save_peft_adapter(p) / "adapter_config.json").unlink(), p)[1]))
case("adapter_missing_weights", AdapterError, "no adapter_model.safetensors")(
    import_into_library(lambda p: ((save_peft_adapter(p) / "adapter_model.safetensors").unlink(), p)[1]))
case("adapter_pickle_bin_import", AdapterError, "only adapter_model.bin (a pickle) is present")(
    import_into_library(lambda p: to_pickle(save_peft_adapter(p))))
case("adapter_corrupt_safetensors", AdapterError, "unreadable safetensors file")(
    import_into_library(lambda p: ((save_peft_adapter(p) / "adapter_model.safetensors").write_bytes(b"junk"), p)[1]))
case("adapter_config_not_json", AdapterError, "adapter_config.json: not valid JSON")(
    import_into_library(lambda p: ((save_peft_adapter(p) / "adapter_config.json").write_text("{r: 4"), p)[1]))
case("adapter_not_lora", AdapterError, "peft_type must be 'LORA', got 'IA3'")(
    import_into_library(lambda p: (edit_json(save_peft_adapter(p) / "adapter_config.json", peft_type="IA3"), p)[1]))
case("adapter_import_task_name_traversal", UserInputError, "task name '../evil' cannot name a library folder")(
    import_into_library(save_peft_adapter, task="../evil"))
case("adapter_pickle_bin_eval", AdapterError, "only adapter_model.bin (a pickle) is present")(
    eval_with_adapter(lambda p: to_pickle(save_peft_adapter(p))))
case("adapter_missing_dir_eval", AdapterError, "adapter directory does not exist")(
    eval_with_adapter(lambda p: p / "nowhere"))
case("adapter_wrong_shapes_eval", AdapterError, "adapter does not fit the base model")(eval_with_adapter(_wider_llama))


# ------------------------------------------------------------------------------------------------ models


def _saved_tiny(path: Path) -> Path:
    lm = build_tiny_model("llama", seed=0)
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@case("model_dir_pickle_only", ModelLoadError, "pytorch_model.bin")
def _(d: Path):
    model_dir = d / "model"
    lm = build_tiny_model("llama", seed=0)
    lm.model.config.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    torch.save(lm.model.state_dict(), model_dir / "pytorch_model.bin")
    task = write(d, "t.jsonl", good_records())
    return lambda: run_eval(str(model_dir), str(task), out=d / "result.json", progress=False)


@case("model_remote_code_not_trusted", ModelLoadError, "--trust-remote-code")
def _(d: Path):
    """A model folder whose config asks for its own code: without trust_remote_code that code never runs."""
    model_dir = _saved_tiny(d / "model")
    edit_json(model_dir / "config.json", model_type="loralab_remote_test",
              auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                        "AutoModelForCausalLM": "modeling_evil.EvilModel"})
    marker = d / "remote-code-ran"
    code = f"open({str(marker)!r}, 'w').write('pwned')\n"
    write(model_dir, "configuration_evil.py", code)
    write(model_dir, "modeling_evil.py", code)
    task = write(d, "t.jsonl", good_records())
    return lambda: run_eval(str(model_dir), str(task), out=d / "result.json", progress=False)


@case("model_unknown_alias", UnknownNameError, "unknown model 'tiny-lama'. Did you mean 'tiny-llama'")
def _(d: Path):
    task = write(d, "t.jsonl", good_records())
    return lambda: run_eval("tiny-lama", str(task), out=d / "result.json", progress=False)


# ------------------------------------------------------------------------------------------------ library entries

SHA = "loralab.json"


def _tamper_entry(**changes: Any) -> Callable[[Path], None]:
    return lambda adapter: edit_json(adapter / SHA, **changes)


def _edit_hash(adapter: Path) -> None:
    entry = json.loads((adapter / SHA).read_text())
    entry["files"]["adapter_model.safetensors"] = "0" * 64
    (adapter / SHA).write_text(json.dumps(entry))


def _flip_a_byte(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def _traversal_name(adapter: Path) -> None:
    entry = json.loads((adapter / SHA).read_text())
    entry["files"]["../../../secret.txt"] = "0" * 64
    (adapter / SHA).write_text(json.dumps(entry))


case("library_weights_modified", AdapterError, "adapter_model.safetensors does not match its recorded SHA-256")(
    use_tampered_library(_flip_a_byte))
case("library_hash_edited", AdapterError, "adapter_model.safetensors does not match its recorded SHA-256")(
    use_tampered_library(_edit_hash))
case("library_listed_file_missing", AdapterError, "file adapter_config.json listed in loralab.json is missing")(
    use_tampered_library(lambda a: (a / "adapter_config.json").unlink()))
case("library_files_not_a_mapping", AdapterError, "'files' must be a JSON object, got ['adapter_model.safetensors']")(
    use_tampered_library(_tamper_entry(files=["adapter_model.safetensors"])))
case("library_files_traversal", AdapterError, "lists '../../../secret.txt', which is not a file name inside")(
    use_tampered_library(_traversal_name))
case("library_hash_not_hex", AdapterError, "the hash of adapter_config.json must be 64 hex digits, got 'abc'")(
    use_tampered_library(lambda a: edit_json(a / SHA, files={**json.loads((a / SHA).read_text())["files"],
                                                              "adapter_config.json": "abc"})))
case("library_unlisted_pickle_added", AdapterError, "adapter_model.bin not recorded in loralab.json")(
    use_tampered_library(lambda a: torch.save({}, a / "adapter_model.bin")))
case("library_entry_not_json", AdapterError, "unreadable library entry")(
    use_tampered_library(lambda a: (a / SHA).write_text("{not json")))


# ------------------------------------------------------------------------------------------------ names and paths


@case("library_task_name_traversal", UserInputError, "task name '../evil' cannot name a library folder")
def _(d: Path):
    return lambda: build_library(build_tiny_model("llama"), [toy_task("../evil", n=8)], d / "lib", hparams=LIB_HP,
                                 eval_limit=0, progress=False)


@case("library_task_name_hidden", UserInputError, "task name '.work' cannot name a library folder")
def _(d: Path):
    return lambda: build_library(build_tiny_model("llama"), [toy_task(".work", n=8)], d / "lib", hparams=LIB_HP,
                                 eval_limit=0, progress=False)


@case("compare_task_name_traversal", UserInputError, "task name '../../../evil' cannot name a library folder")
def _(d: Path):
    write(d, "t.jsonl", good_records())
    config = write(d, "t.yaml", "source: jsonl\npath: t.jsonl\nname: ../../../evil\n")  # names cells/checkpoints
    from loralab.bench.compare import compare_methods

    return lambda: compare_methods("tiny-llama", ["base"], [str(config)], d / "cmp", eval_limit=2)


@case("library_task_twice", UserInputError, "tasks lists a task twice")
def _(d: Path):
    return lambda: build_library(build_tiny_model("llama"), [toy_task("a", n=8), toy_task("a", n=8)], d / "lib",
                                 hparams=LIB_HP, eval_limit=0, progress=False)


@case("library_out_is_a_file", UserInputError, "is an existing file; give a folder path")
def _(d: Path):
    out = write(d, "lib", "I am a file")
    return lambda: build_library("tiny-llama", [toy_task("a", n=8)], out, hparams=LIB_HP, eval_limit=0, progress=False)


@case("eval_out_is_a_folder", UserInputError, "is an existing folder; give a file path")
def _(d: Path):
    (d / "results").mkdir()
    task = write(d, "t.jsonl", good_records())
    return lambda: run_eval("tiny-llama", str(task), out=d / "results", progress=False)


@case("export_out_below_a_file", UserInputError, "is a file, not a folder")
def _(d: Path):
    task = write(d, "t.jsonl", good_records())
    blocker = write(d, "blocker", "x")
    return lambda: export_task(str(task), blocker / "out.jsonl", split="all")


@case("train_out_is_a_file", UserInputError, "is an existing file; give a folder path")
def _(d: Path):
    out = write(d, "run", "x")
    return lambda: train_method("loramoe", "tiny-llama", [toy_task("t0", n=8)], out, progress=False)


# ------------------------------------------------------------------------------------------------ command line


def cli_task(d: Path) -> str:
    return str(write(d, "toy.jsonl", good_records(24)))


case("cli_missing_option", CLI, "Missing option '--tasks'")(
    lambda d: ["library", "build", "--model", "tiny-llama", "--out", str(d / "lib")])
case("cli_not_an_int", CLI, "Invalid value for '--limit'")(
    lambda d: ["eval", "--model", "tiny-llama", "--task", cli_task(d), "--limit", "abc", "--out", str(d / "r.json")])
case("cli_unknown_command", CLI, "No such command 'evl'. Did you mean 'eval'?")(lambda d: ["evl"])
case("cli_unknown_option", CLI, "No such option: --otu")(
    lambda d: ["eval", "--model", "tiny-llama", "--task", cli_task(d), "--otu", str(d / "r.json")])
case("cli_zero_limit", CLI, "--limit must be >= 1, got 0")(
    lambda d: ["eval", "--model", "tiny-llama", "--task", cli_task(d), "--limit", "0", "--out", str(d / "r.json")])
case("cli_negative_eval_limit", CLI, "--eval-limit must be >= 0, got -1")(
    lambda d: ["library", "build", "--model", "tiny-llama", "--tasks", cli_task(d), "--out", str(d / "lib"),
               "--eval-limit", "-1"])
case("cli_negative_limit", CLI, "--limit must be >= 0, got -1")(  # the current spelling of --eval-limit
    lambda d: ["library", "build", "--model", "tiny-llama", "--tasks", cli_task(d), "--out", str(d / "lib"),
               "--limit", "-1"])
case("cli_zero_threads", CLI, "--threads must be >= 1, got 0")(lambda d: ["--threads", "0", "tasks", "ls"])
case("cli_zero_threads_after_the_verb", CLI, "--threads must be >= 1, got 0")(
    lambda d: ["tasks", "ls", "--threads", "0"])
case("cli_bad_seeds", CLI, "--seeds must be comma-separated integers like 0,1,2, got 'a,b'")(
    lambda d: ["compare", "--model", "tiny-llama", "--methods", "base", "--tasks", cli_task(d), "--out",
               str(d / "cmp"), "--seeds", "a,b"])
case("cli_config_typo", CLI, "unknown key 'rnak' (did you mean 'rank'?)")(
    lambda d: ["library", "build", "--model", "tiny-llama", "--tasks", cli_task(d), "--out", str(d / "lib"),
               "--config", str(write(d, "hp.yaml", "rnak: 4\n"))])
case("cli_hparams_typo", CLI, "unknown key 'rnak' (did you mean 'rank'?)")(  # the current spelling of --config
    lambda d: ["library", "build", "--model", "tiny-llama", "--tasks", cli_task(d), "--out", str(d / "lib"),
               "--hparams", str(write(d, "hp.yaml", "rnak: 4\n"))])
case("cli_pickle_adapter_without_flag", CLI, "--allow-pickle")(
    lambda d: ["library", "add", str(d / "lib"), "--adapter", str(to_pickle(save_peft_adapter(d / "adapter"))),
               "--task", cli_task(d), "--model", "tiny-llama"])
case("cli_out_is_a_folder", CLI, "is an existing folder; give a file path")(
    lambda d: ["data", "export", cli_task(d), "--out", str((d / "dir").mkdir() or d / "dir")])


# ------------------------------------------------------------------------------------------------ the test


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `root` with (size, mtime) for files: any write, creation or removal changes it."""
    out: dict[str, tuple[int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = None if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def test_at_least_forty_distinct_bad_inputs():
    assert len(CASES) >= 40
    assert len({c.error for c in CASES.values()}) >= 8  # spread over the error classes, not one kind repeated


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys, request):
    spec = CASES[name]
    if spec.setup.__qualname__.startswith("use_tampered_library"):
        shutil.copytree(request.getfixturevalue("built_library"), tmp_path / "_library")
    work = tmp_path / "case"
    work.mkdir()
    action = spec.setup(work)
    before = snapshot(tmp_path)
    if spec.error == CLI:
        code, out, err = run_cli(monkeypatch, capsys, *action)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert spec.needle in lines[0], (spec.needle, lines[0])
        assert "Traceback" not in err + out
    else:
        with pytest.raises(Exception) as info:
            action()
        assert type(info.value) is spec.error, (type(info.value), info.value)
        message = str(info.value)
        assert message and "\n" not in message, repr(message)
        assert spec.needle in message, (spec.needle, message)
        assert info.value.exit_code == 2
    assert snapshot(tmp_path) == before, "a failed call wrote, created or removed files"


def test_usage_error_from_the_installed_entry_point():
    """The real process, not only `main()`: a click usage error is one line and exit code 2 (was a traceback)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "loralab.cli", "library", "build", "--model", "tiny-llama"],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == ["error: Missing option '--tasks'. (see 'python -m loralab.cli library "
                                              "build --help')"], proc.stderr
