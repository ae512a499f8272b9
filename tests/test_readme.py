"""The README's command output is what the commands print, and its install commands are the ones CI runs.

Each output table in the README follows a marker `<!-- output: NAME -->`. The test runs the same command on a
tiny model and toy tasks and checks that the README table has the command's columns, in its order, and that every
cell is written the way the command writes that column (`0.3850`, `+0.903`, `acc (test, n=200)`, `159 s`): the
numbers differ (SmolLM2 there, a tiny random model here), the format may not. Running the README's own commands
would need SmolLM2 and hours.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def markdown_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def readme_table(name: str) -> tuple[str, list[str], list[list[str]]]:
    """(the paragraph before the table, its header, its rows) of the README table marked `name`."""
    marker = f"<!-- output: {name} -->\n"
    assert README.count(marker) == 1, f"the README has no (or several) {marker.strip()}"
    before, after = README.split(marker)
    lines = []
    for line in after.splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    assert len(lines) >= 3 and set(lines[1]) <= set("|-: "), f"no markdown table after {marker.strip()}"
    return before.rstrip().split("\n\n")[-1], markdown_cells(lines[0]), [markdown_cells(line) for line in lines[2:]]


def cli_table(output: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the rich table in a command's output (piped: one line per row, nothing wrapped)."""
    lines = output.splitlines()
    header = next(line for line in lines if "┃" in line)
    rows = [line for line in lines if line.startswith("│")]
    return ([c.strip() for c in header.strip("┃").split("┃")],
            [[c.strip() for c in row.strip("│").split("│")] for row in rows])


def shape(text: str) -> str:
    """How a cell is written, without what it says: `+0.903` -> `±9.999`, `acc (test, n=200)` -> `w (w, w=9)`."""
    text = re.sub(r"[A-Za-z_][\w-]*", "w", text)  # names first: `smollm2-135m` is one word
    text = re.sub(r"[+-](?=\d)", "±", text)
    text = re.sub(r"\d+\.(\d+)", lambda m: "9." + "9" * len(m.group(1)), text)
    return re.sub(r"\d+", "9", text)


def assert_same_format(readme: tuple[list[str], list[list[str]]], cli: tuple[list[str], list[list[str]]]) -> None:
    (r_header, r_rows), (c_header, c_rows) = readme, cli
    assert r_header == c_header, f"README columns {r_header}, the command prints {c_header}"
    assert c_rows and all(len(row) == len(r_header) for row in r_rows)
    for j, column in enumerate(r_header):
        printed = [row[j] for row in c_rows]
        if not any(re.search(r"\d", cell) for cell in printed):
            continue  # names (task, model, origin): nothing to compare but that the column is there
        shapes = {shape(cell) for cell in printed}
        wrong = [row[j] for row in r_rows if shape(row[j]) not in shapes]
        assert not wrong, f"column {column!r}: README writes {wrong[:3]}, the command writes {printed[:3]}"


@pytest.fixture(scope="module")
def toy_tasks(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("readme")
    paths = []
    for name in ("zeta", "alpha"):  # not in name order: `library ls` sorts
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no", " maybe"],
                                            "answer_index": i % 2, "split": "test" if i % 3 == 0 else "train"}) + "\n"
                                for i in range(18)), encoding="utf-8")
        paths.append(path)
    return paths


def test_eval_output(monkeypatch, capsys, toy_tasks):
    intro, header, rows = readme_table("eval")
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(toy_tasks[1]),
                             "--limit", "4")
    assert code == 0, err
    assert_same_format((header, rows), cli_table(out))
    first_line = out.splitlines()[0]
    shown = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", intro) if " on " in span]
    assert [shape(s) for s in shown] == [shape(first_line)], (shown, first_line)  # the line above the table
    command = next(" ".join(span.split()) for span in re.findall(r"`([^`]+)`", intro) if span.startswith("loralab"))
    assert shlex.split(command)[:2] == ["loralab", "eval"]
    assert [row[0] for row in rows] == [row[0] for row in cli_table(out)[1]]  # the same metrics, in order


def test_library_ls_output(monkeypatch, capsys, tmp_path, toy_tasks):
    _, header, rows = readme_table("library ls")
    lib = tmp_path / "lib"
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks",
                           ",".join(map(str, toy_tasks)), "--out", str(lib), "--max-steps", "1", "--limit", "3")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "library", "ls", str(lib))
    assert code == 0, err
    printed = cli_table(out)
    assert_same_format((header, rows), printed)
    assert [row[0] for row in printed[1]] == ["alpha", "zeta"]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows), "`library ls` lists the tasks by name"


def test_install_commands_are_what_ci_runs():
    block = re.search(r"## Three commands\n\n```bash\n(.*?)```", README, flags=re.S).group(1)
    installs = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("pip install")]
    users = [line for line in installs if "[dev]" not in line]
    contributors = [line for line in installs if "[dev]" in line]
    assert len(users) == 1 and len(contributors) == 1, installs  # one command each
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [" ".join(w for w in line.split() if w != "--quiet") for line in ci.splitlines()]
    assert contributors[0] in ci_lines, f".ci/run does not install with {contributors[0]!r}"
    assert "pytest -q" in block.splitlines() and "pytest -q" in ci_lines
