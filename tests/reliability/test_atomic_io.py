"""Atomic writes under SIGKILL: the previous version survives, leftovers are cleaned by the next write."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loralab.library import Library
from loralab.utils.io import atomic_dir, atomic_path, atomic_write_text, recover_leftovers


def killed_child(code: str) -> None:
    """Run `code` in a fresh interpreter that ends by SIGKILL-ing itself at the point the code chooses."""
    prelude = "import os, signal\ndef die():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_file_killed_mid_write_keeps_the_old_version(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old\n")
    killed_child(f"""
        from loralab.utils.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half of the ne")
            die()
    """)
    assert target.read_text() == "old\n"
    assert len(hidden(tmp_path)) == 1 and hidden(tmp_path)[0].endswith(".tmp")  # the dead writer's leftover
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and hidden(tmp_path) == []


def test_folder_killed_between_the_two_renames_is_restored(tmp_path):
    """Replacing a folder moves the old one aside first: a kill right then must not lose it."""
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("v1")
    killed_child(f"""
        import os
        from loralab.utils.io import atomic_dir
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith(".old"):
                die()  # the old folder is aside, the new one not yet in place
        os.replace = replace
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "weights").write_text("v2")
    """)
    assert not target.exists()
    assert sorted(Path(n).suffix for n in hidden(tmp_path)) == [".old", ".tmp"]
    recover_leftovers(target)  # what the next atomic write of this path does first
    assert (target / "weights").read_text() == "v1" and hidden(tmp_path) == []
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2" and hidden(tmp_path) == []


def test_folder_killed_before_publishing_leaves_nothing_visible(tmp_path):
    target = tmp_path / "lib" / "tiny-llama" / "alpha"
    killed_child(f"""
        import json
        from loralab.utils.io import atomic_dir
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "adapter_model.safetensors").write_bytes(b"x")
            (tmp / "loralab.json").write_text(json.dumps({{"task": "alpha", "model": "tiny-llama", "files": {{}}}}))
            die()
    """)
    assert not target.exists()
    # the complete-looking temporary folder is not an adapter of the library
    assert Library(tmp_path / "lib").entries() == []
    Library(tmp_path / "lib").refresh_manifest()
    assert json.loads((tmp_path / "lib" / "manifest.json").read_text())["adapters"] == []
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("done")
    assert hidden(target.parent) == []


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("in progress")
        recover_leftovers(target)  # e.g. a second process starting on the same path
        assert tmp.exists()
    with atomic_dir(tmp_path / "d") as tmp_dir:
        recover_leftovers(tmp_path / "d")
        assert tmp_dir.exists()
    assert target.read_text() == "in progress" and (tmp_path / "d").is_dir()


def test_similar_names_are_not_touched(tmp_path):
    """Leftovers are matched by exact name: cleaning `a` never touches the temporaries of `a.b`."""
    (tmp_path / ".a.b.abcdefgh.tmp").mkdir()
    (tmp_path / ".a.b.abcdefgh.old").mkdir()
    recover_leftovers(tmp_path / "a")
    assert not (tmp_path / "a").exists() and len(hidden(tmp_path)) == 2


def test_error_inside_the_block_removes_the_temporary(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
