"""Outputs never destroy user files, are shareable, and are valid: the command-line contract of every writer.

* A folder output (train, library build/add, compare, bench, analyze-router, report, merge) is refused when it
  holds files loralab did not write: exit 2, one `error:` line, every byte of the folder unchanged. An empty
  folder or loralab's own output of the same kind is accepted (re-running resumes or replaces it).
* A file output (eval --out, data export --out) replaces only an empty file or loralab's own output of that kind.
* A read-only location or a special file fails before any work.
* Files and folders follow the umask (not mkstemp's 0600 / mkdtemp's 0700).
* Every JSON loralab writes is strict (no bare NaN); `loralab report` never modifies its database.
* `report_to: tensorboard` in a library build keeps the event files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from loralab.bench.store import Store
from loralab.errors import UserInputError
from loralab.utils.io import OUTPUT_MARKER, atomic_dir, atomic_write_json, atomic_write_text


def write_task(path: Path, n: int = 24) -> Path:
    records = [{"prompt": f"Q: is {i} even?\nA:", "choices": [" yes", " no"], "answer_index": i % 2,
                "split": "test" if i % 3 == 0 else "train"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, Any]:
    """Every entry below `root`: a file's bytes' hash, a folder as None."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def user_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return path


def strict_json(path: Path) -> Any:
    """Parse as a strict (RFC 8259) parser does: NaN / Infinity are errors."""
    def reject(name: str) -> Any:
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def one_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def task(tmp_path) -> Path:
    return write_task(tmp_path / "toy.jsonl")


def bench_db(path: Path) -> Path:
    with Store(path) as store:
        store.set_meta("bench", {"name": "t", "plan": [], "seeds": [0], "config": {}})
    return path


# ------------------------------------------------------------------------------ folders: refuse user files

def _bench_config(tmp: Path, task: Path) -> Path:
    path = tmp / "bench.yaml"
    path.write_text(f"name: t\nmodels: [tiny-llama]\nmethods: [base]\ntargets: [{task}]\neval: {{limit: 2}}\n"
                    "device: cpu\n", encoding="utf-8")
    return path


FOLDER_COMMANDS = {
    "train": lambda tmp, task, out: ["train", "--method", "base", "--model", "tiny-llama", "--task", str(task),
                                     "--out", str(out)],
    "library-build": lambda tmp, task, out: ["library", "build", "--model", "tiny-llama", "--tasks", str(task),
                                             "--out", str(out), "--max-steps", "1", "--eval-limit", "0"],
    "library-add": lambda tmp, task, out: ["library", "add", str(out), "--adapter", str(tmp / "adapter"),
                                           "--task", str(task)],
    "compare": lambda tmp, task, out: ["compare", "--model", "tiny-llama", "--methods", "base", "--tasks", str(task),
                                       "--eval-limit", "2", "--out", str(out)],
    "bench": lambda tmp, task, out: ["bench", str(_bench_config(tmp, task)), "--out", str(out)],
    "analyze-router": lambda tmp, task, out: ["analyze-router", "--model", "tiny-llama", "--adapter",
                                              str(tmp / "adapter"), "--task", str(task), "--out", str(out)],
    "report": lambda tmp, task, out: ["report", str(bench_db(tmp / "bench.sqlite")), "--out", str(out)],
    "merge": lambda tmp, task, out: ["merge", "--adapter", str(tmp / "adapter"), "--out", str(out)],
}


@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS))
def test_a_folder_of_user_files_is_refused_and_left_as_it_was(command, tmp_path, task, monkeypatch, capsys):
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    code, _, err = run_cli(monkeypatch, capsys, *FOLDER_COMMANDS[command](tmp_path, task, out))
    line = one_error(code, err, str(out))
    assert "not a loralab" in line or "already exists" in line, line
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no work folder beside it


def test_train_accepts_an_empty_folder_and_replaces_only_its_own_checkpoint(tmp_path, task, monkeypatch, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    args = FOLDER_COMMANDS["train"](tmp_path, task, out)
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    assert (out / "loralab_method.json").is_file()
    assert run_cli(monkeypatch, capsys, *args)[0] == 0  # re-training replaces loralab's own checkpoint
    # a checkpoint is not a library: building one into it would mix two kinds of output
    code, _, err = run_cli(monkeypatch, capsys, *FOLDER_COMMANDS["library-build"](tmp_path, task, out))
    one_error(code, err, "not a loralab LoRA library")
    # nor is a library adapter folder a checkpoint
    lib = tmp_path / "lib"
    assert run_cli(monkeypatch, capsys, *FOLDER_COMMANDS["library-build"](tmp_path, task, lib))[0] == 0
    adapter = lib / "tiny-llama" / "toy"
    before = snapshot(lib)
    code, _, err = run_cli(monkeypatch, capsys, *FOLDER_COMMANDS["train"](tmp_path, task, adapter))
    one_error(code, err, "not a loralab method checkpoint")
    assert snapshot(lib) == before


# ------------------------------------------------------------------------------ compare: strict JSON, resumable

def test_compare_writes_strict_json_and_resumes_its_own_folder(tmp_path, task, monkeypatch, capsys):
    out = tmp_path / "cmp"
    args = FOLDER_COMMANDS["compare"](tmp_path, task, out)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    files = sorted(p for p in out.rglob("*.json"))
    assert out / "results.json" in files and out / OUTPUT_MARKER in files
    parsed = {p: strict_json(p) for p in files}  # `base` trains nothing: its loss is missing, i.e. null
    (record,) = parsed[out / "results.json"]
    assert record["method"] == "base" and record["train"]["loss"] is None
    assert "NaN" not in (out / "results.json").read_text(encoding="utf-8")
    assert run_cli(monkeypatch, capsys, *args)[0] == 0  # its own folder: the finished cell is reused
    # a comparison from before the marker existed is still recognised by its layout
    (out / OUTPUT_MARKER).unlink()
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    # and a user file next to it turns it into a folder loralab does not own
    (out / OUTPUT_MARKER).unlink()
    (out / "thesis.tex").write_text("\\section{}", encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    one_error(code, err, "not a loralab comparison folder")


# ------------------------------------------------------------------------------ files: replace only our own

def test_eval_out_replaces_its_own_result_but_not_a_user_file(tmp_path, task, monkeypatch, capsys):
    result = tmp_path / "result.json"
    args = ["eval", "--model", "tiny-llama", "--task", str(task), "--limit", "2", "--out", str(result)]
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    first = strict_json(result)
    assert run_cli(monkeypatch, capsys, *args)[0] == 0  # a re-run updates loralab's own result
    assert strict_json(result)["metrics"] == first["metrics"]

    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "settings"}\n', encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, *args[:-1], str(mine))
    one_error(code, err, str(mine), "not a loralab result file")
    assert mine.read_text(encoding="utf-8") == '{"my": "settings"}\n'
    empty = tmp_path / "empty.json"
    empty.touch()
    assert run_cli(monkeypatch, capsys, *args[:-1], str(empty))[0] == 0  # nothing to lose in an empty file


def test_data_export_replaces_its_own_export_but_not_a_hand_written_task(tmp_path, task, monkeypatch, capsys):
    out = tmp_path / "export.jsonl"
    args = ["data", "export", str(task), "--out", str(out)]
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    exported = out.read_bytes()
    assert run_cli(monkeypatch, capsys, *args)[0] == 0 and out.read_bytes() == exported
    before = task.read_bytes()  # the input itself is a unified task the user wrote (no ids, other fields)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", str(task), "--out", str(task))
    one_error(code, err, "not a loralab task export")
    assert task.read_bytes() == before


def test_a_special_file_is_never_replaced(tmp_path, task, monkeypatch, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", "tiny-llama", "--task", str(task), "--out",
                           str(fifo))
    one_error(code, err, "not a regular file")
    assert Path(fifo).exists() and not Path(fifo).is_file()


# ------------------------------------------------------------------------------ read-only locations

READ_ONLY_COMMANDS = {
    "eval": lambda ro, task: ["eval", "--model", "tiny-llama", "--task", str(task), "--out", str(ro / "r.json")],
    "train": lambda ro, task: FOLDER_COMMANDS["train"](ro, task, ro / "ckpt"),
    "library-build": lambda ro, task: FOLDER_COMMANDS["library-build"](ro, task, ro),
    "compare": lambda ro, task: FOLDER_COMMANDS["compare"](ro, task, ro / "new" / "cmp"),
    "export": lambda ro, task: ["data", "export", str(task), "--out", str(ro / "t.jsonl")],
}


@pytest.mark.parametrize("command", sorted(READ_ONLY_COMMANDS))
def test_a_read_only_location_fails_before_any_work(command, tmp_path, monkeypatch, capsys):
    task = write_task(tmp_path / "toy.jsonl")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        args = READ_ONLY_COMMANDS[command](ro, task)
        if os.geteuid() == 0:
            code, err = _run_without_dac_override(args, ro)
        else:
            code, _, err = run_cli(monkeypatch, capsys, *args)
        one_error(code, err, "is not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def _drop_dac_override() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE obeys permission bits like any user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from the bounding set (PR_CAPBSET_DROP)
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_without_dac_override(args: list[str], ro: Path) -> tuple[int, str]:
    """Run `loralab ARGS` as root without the capability that writes through permission bits."""
    def run(argv: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, preexec_fn=_drop_dac_override, timeout=600)
        except subprocess.SubprocessError as exc:
            pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {exc}")

    probe = run([sys.executable, "-c", f"open({str(ro / 'probe')!r}, 'w')"])
    if probe.returncode == 0:
        (ro / "probe").unlink()
        pytest.skip("root still writes into a 0555 folder here (capabilities could not be dropped)")
    proc = run([sys.executable, "-m", "loralab.cli", *args])
    return proc.returncode, proc.stderr


# ------------------------------------------------------------------------------ permissions follow the umask

@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "nested" / "b.json", {"x": 1})
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
        atomic_write_json(tmp / "inner.json", {})
    for name in ("a.txt", "nested/b.json", "d/f", "d/inner.json"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o666 & ~umask), name
    for name in ("nested", "d"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o777 & ~umask), name
    with Store(tmp_path / "bench.sqlite"):  # SQLite alone would create it 0644 whatever the umask
        pass
    assert oct((tmp_path / "bench.sqlite").stat().st_mode & 0o777) == oct(0o666 & ~umask)


def test_a_trained_checkpoint_and_a_library_are_shareable(tmp_path, task, umask, monkeypatch, capsys):
    ckpt, lib = tmp_path / "ckpt", tmp_path / "lib"
    assert run_cli(monkeypatch, capsys, *FOLDER_COMMANDS["train"](tmp_path, task, ckpt))[0] == 0
    assert run_cli(monkeypatch, capsys, *FOLDER_COMMANDS["library-build"](tmp_path, task, lib))[0] == 0
    for root in (ckpt, lib):
        for path in [root, *root.rglob("*")]:
            want = 0o777 & ~umask if path.is_dir() else 0o666 & ~umask
            assert oct(path.stat().st_mode & 0o777) == oct(want), path


# ------------------------------------------------------------------------------ report: read-only, ours only

def _foreign_sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    return path


@pytest.mark.parametrize("kind", ["empty", "foreign-sqlite", "text"])
def test_report_on_a_file_that_is_not_a_bench_database_changes_nothing(kind, tmp_path, monkeypatch, capsys):
    db = tmp_path / "data.sqlite"
    if kind == "empty":
        db.touch()
    elif kind == "text":
        db.write_text("not a database\n", encoding="utf-8")
    else:
        _foreign_sqlite(db)
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "report", str(db))
    one_error(code, err, str(db), "not a loralab benchmark database")
    assert snapshot(tmp_path) == before  # no tables added, no report/ folder, no journal left
    if kind == "foreign-sqlite":
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
        conn.close()


def test_report_reads_its_database_without_modifying_it(tmp_path, monkeypatch, capsys):
    db = bench_db(tmp_path / "bench.sqlite")
    before = db.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "report", str(db))
    assert code == 0, err
    assert db.read_bytes() == before and (tmp_path / "report" / "report.md").is_file()
    assert run_cli(monkeypatch, capsys, "report", str(db))[0] == 0  # its own report folder is rewritten


def test_bench_refuses_to_add_its_tables_to_a_foreign_database(tmp_path):
    db = _foreign_sqlite(tmp_path / "bench.sqlite")
    before = db.read_bytes()
    with pytest.raises(UserInputError, match="not a loralab benchmark database"):
        Store(db)
    assert db.read_bytes() == before


# ------------------------------------------------------------------------------ tensorboard events survive

def test_library_build_keeps_tensorboard_events_beside_the_adapter(tmp_path, task, monkeypatch, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from loralab.library import Library

    config = tmp_path / "hp.yaml"
    config.write_text("max_steps: 2\nbatch_size: 4\nrank: 4\nreport_to: tensorboard\n", encoding="utf-8")
    lib = tmp_path / "lib"
    code, _, err = run_cli(monkeypatch, capsys, "library", "build", "--model", "tiny-llama", "--tasks", str(task),
                           "--out", str(lib), "--config", str(config), "--eval-limit", "0")
    assert code == 0, err
    events = list((lib / "tiny-llama" / "toy" / "tensorboard").glob("**/events.out.tfevents.*"))
    assert events, sorted(str(p.relative_to(lib)) for p in lib.rglob("*"))
    logged = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert any("loss" in tag for tag in logged), logged
    assert not (lib / ".work").exists()  # the trainer's work folder is still removed
    Library(lib).get("tiny-llama", "toy", verify=True)  # the events do not disturb the adapter's recorded files
