"""`loralab select`: the table, the leave-one-out note, and one-line errors with exit code 2."""

from __future__ import annotations

import pytest
from helpers import run_cli


def rows(out: str) -> list[list[str]]:
    """The table's header and body rows as cells (rich draws cells between '┃' (header) or '│' characters)."""
    lines = [line.replace("┃", "│") for line in out.splitlines()]
    return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") == 5]


def select(monkeypatch, capsys, library, task, *args):
    return run_cli(monkeypatch, capsys, "select", "--library", str(library), "--task", str(task),
                   "--model", "tiny-llama", *args)


def test_manual_defaults_with_leave_one_out_note(monkeypatch, capsys, tiny_library, parity_file):
    root, _ = tiny_library
    code, out, err = select(monkeypatch, capsys, root, parity_file, "--strategy", "manual", "--k", "2")
    assert code == 0, err
    assert rows(out)[1:] == [["1", "succ", "math", "1.0000"], ["2", "colour", "knowledge", "0.0000"]]
    assert "manual selection for parity" in out and "highest relevance wins" in out
    assert "target's own LoRA (parity) excluded (leave-one-out)" in out


def test_ppl_with_the_own_lora_included(monkeypatch, capsys, tiny_library, parity_file):
    root, _ = tiny_library
    code, out, err = select(monkeypatch, capsys, root, parity_file, "--strategy", "ppl", "--k", "2", "--include-own",
                            "--n-examples", "8")
    assert code == 0, err
    table = rows(out)
    assert table[0] == ["rank", "task", "domain", "perplexity"] and table[1][:2] == ["1", "parity"]
    assert float(table[1][3]) < float(table[2][3])
    assert "lowest perplexity wins" in out and "target's own LoRA (parity) included" in out


def test_random_is_the_same_for_the_same_seed(monkeypatch, capsys, tiny_library, parity_file):
    root, _ = tiny_library
    runs = [select(monkeypatch, capsys, root, parity_file, "--strategy", "random", "--k", "3", "--seed", seed)
            for seed in ("5", "5", "6")]
    assert all(code == 0 for code, _, _ in runs)
    assert rows(runs[0][1]) == rows(runs[1][1])
    assert sorted(r[1] for r in rows(runs[0][1])[1:]) == ["colour", "echo", "succ"]


@pytest.mark.parametrize("args, needle", [
    (["--strategy", "perplexity", "--k", "1"], "unknown selection strategy 'perplexity'"),
    (["--strategy", "ppl", "--k", "4"], "--k must be between 1 and 3"),
    (["--strategy", "ppl", "--k", "5", "--include-own"], "--k must be between 1 and 4 "),
    (["--strategy", "random", "--k", "0"], "--k must be between 1 and 3"),
    (["--strategy", "ppl", "--k", "1", "--seed", "3"], "option 'seed' does not apply to strategy 'ppl'"),
    (["--strategy", "ppl", "--k", "1", "--split", "test"], "split must be one of train, validation (never test"),
    (["--strategy", "embedding", "--k", "1"], "needs examples of library task 'colour'"),
    (["--strategy", "manual", "--k", "1", "--relevance", "RELEVANCE"], "unknown listed task 'sux'"),
])
def test_bad_input_is_one_line_and_exit_code_2(monkeypatch, capsys, tiny_library, parity_file, args, needle):
    root, _ = tiny_library
    relevance = parity_file.parent / "relevance.yaml"
    relevance.write_text("parity: [sux]\n")
    args = [str(relevance) if a == "RELEVANCE" else a for a in args]
    code, out, err = select(monkeypatch, capsys, root, parity_file, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err


def test_library_without_the_model(monkeypatch, capsys, tiny_library, parity_file):
    root, _ = tiny_library
    code, _, err = run_cli(monkeypatch, capsys, "select", "--library", str(root), "--task", str(parity_file),
                           "--model", "tiny-gpt2", "--strategy", "random", "--k", "1")
    assert code == 2 and "has no adapters for model 'tiny-gpt2'; it has adapters for: tiny-llama" in err
    assert err.count("\n") == 1
