"""`loralab select --out FILE.json` / `select_experts(out=...)`: the selection with every candidate's score,
written atomically; a file that is not loralab's own selection is never replaced."""

from __future__ import annotations

import json

from helpers import run_cli

from loralab.selection import select_experts


def select(monkeypatch, capsys, library, task, *args):
    return run_cli(monkeypatch, capsys, "select", "--library", str(library), "--task", str(task),
                   "--model", "tiny-llama", *args)


def test_select_out_writes_the_selection_with_scores(monkeypatch, capsys, tiny_library, parity_file, tmp_path):
    root, _ = tiny_library
    out = tmp_path / "selection.json"
    code, stdout, err = select(monkeypatch, capsys, root, parity_file, "--strategy", "ppl", "--k", "2",
                               "--n-examples", "4", "--out", str(out))
    assert code == 0, err
    assert f"wrote {out}" in err
    record = json.loads(out.read_text())
    assert record["format"] == "loralab-selection/1"
    assert (record["strategy"], record["target"], record["k"], record["model"]) == ("ppl", "parity", 2, "tiny-llama")
    assert record["own_lora"] == "excluded" and record["exclude_own"] is True
    assert record["score_name"] == "perplexity" and record["higher_is_better"] is False
    assert record["options"]["n_examples"] == 4 and record["precision"]["name"] == "fp32"
    # every candidate (the own LoRA left out), ranked; the chosen are the first k, with the printed scores
    assert sorted(c["task"] for c in record["candidates"]) == ["colour", "echo", "succ"]
    scores = [c["score"] for c in record["candidates"]]
    assert scores == sorted(scores)
    assert [c["task"] for c in record["chosen"]] == [c["task"] for c in record["candidates"][:2]]
    for chosen in record["chosen"]:
        assert f"{chosen['task']}" in stdout and f"{chosen['score']:.4f}" in stdout
    # the same command again replaces its own file
    code, _, err = select(monkeypatch, capsys, root, parity_file, "--strategy", "random", "--k", "1",
                          "--out", str(out))
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["strategy"] == "random" and record["precision"] is None and len(record["chosen"]) == 1


def test_select_out_never_replaces_another_file(monkeypatch, capsys, tiny_library, parity_file, tmp_path):
    root, _ = tiny_library
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}\n', encoding="utf-8")
    code, stdout, err = select(monkeypatch, capsys, root, parity_file, "--strategy", "random", "--k", "1", "--out",
                               str(other))
    assert code == 2 and err.count("\n") == 1 and stdout == "", err
    assert "error: --out" in err and "is an existing file that is not a loralab selection file" in err
    assert other.read_text() == '{"mine": true}\n'


def test_select_experts_out_from_python(tiny_library, tmp_path):
    root, tasks = tiny_library
    out = tmp_path / "sel.json"
    chosen = select_experts("manual", "tiny-llama", root, tasks["parity"], 2, out=out)
    record = json.loads(out.read_text())
    assert record["chosen"] == [s.to_dict() for s in chosen]
    assert record["options"] == {"relevance": None}
