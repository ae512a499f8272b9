"""`loralab push FOLDER --repo OWNER/NAME`: any loralab output with its card to the hub (mocked: `fake_hub`)."""

from __future__ import annotations

import pytest
from fake_hub import FakeHub, folder_bytes
from helpers import run_cli, toy_task

from loralab.library import LoRAHparams, build_library
from loralab.models import build_tiny_model
from loralab.moe.model import MoEModel
from loralab.recipes.merge import merge_adapter
from loralab.recipes.train import train_method

HP = LoRAHparams(max_steps=1, batch_size=4, rank=4)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """A library LoRA, a MoRE checkpoint and the model merged from it, each written once."""
    root = tmp_path_factory.mktemp("outputs")
    build_library(build_tiny_model("llama", seed=0), [toy_task("alpha", n=8)], root / "lib", hparams=HP,
                  eval_limit=0, progress=False)
    train_method("more", build_tiny_model("llama", seed=0), [toy_task("alpha", n=8), toy_task("beta", n=8)],
                 root / "more", config={"rank": 4}, hparams=HP, progress=False)
    merge_adapter(root / "more", root / "merged", task="alpha", device="cpu")
    return root


@pytest.fixture
def hub(monkeypatch, tmp_path) -> FakeHub:
    return FakeHub.install(monkeypatch, tmp_path / "hub")


@pytest.mark.parametrize("folder, kind", [("lib/tiny-llama/alpha", "library-lora"), ("more", "method-checkpoint"),
                                          ("merged", "merged-model")])
def test_push_uploads_the_folder_as_it_is(monkeypatch, capsys, outputs, hub, folder, kind):
    before = folder_bytes(outputs / folder)
    code, out, err = run_cli(monkeypatch, capsys, "push", str(outputs / folder), "--repo", "me/thing", "--private",
                             "--message", "hello")
    assert code == 0, err
    assert out.strip() == "https://huggingface.co/me/thing/commit/0123abc"
    assert f"pushed {kind}" in err
    (create,) = [kw for name, kw in hub.calls if name == "create_repo"]
    assert create["private"] is True and create["repo_type"] == "model"
    (upload,) = [kw for name, kw in hub.calls if name == "upload_folder"]
    assert upload["commit_message"] == "hello" and upload["create_pr"] is False
    visible = {k: v for k, v in before.items() if not any(part.startswith(".") for part in k.split("/"))}
    assert folder_bytes(hub.repos["me/thing"]) == visible and "README.md" in visible
    assert folder_bytes(outputs / folder) == before  # reading never modifies the input


def test_a_pushed_checkpoint_loads_back_from_the_repo(monkeypatch, capsys, outputs, hub):
    code, _, err = run_cli(monkeypatch, capsys, "push", str(outputs / "more"), "--repo", "me/more")
    assert code == 0, err
    moe = MoEModel.from_pretrained("me/more")
    assert moe.method == "more" and moe.tasks == ["alpha", "beta"]


@pytest.mark.parametrize("make, needle", [
    (lambda root, out: out / "more", "repo 'not/a/repo' is not a hub repo id"),  # the flag, as typed
    (lambda root, out: root / "missing", "no such folder to push"),
    (lambda root, out: (root / "mine").mkdir() or root / "mine", "is not an output of loralab"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_uploaded(monkeypatch, capsys, outputs, hub, tmp_path, make,
                                                             needle):
    folder = make(tmp_path, outputs)
    code, out, err = run_cli(monkeypatch, capsys, "push", str(folder), "--repo",
                             "not/a/repo" if "repo" in needle else "me/x")
    assert code == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert hub.names("create_repo") == [] and hub.names("upload_folder") == []


def test_a_tampered_or_cardless_output_is_not_published(monkeypatch, capsys, outputs, hub, tmp_path):
    import shutil

    work = tmp_path / "more"
    shutil.copytree(outputs / "more", work)
    weights = work / "method_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 0xFF]))
    code, _, err = run_cli(monkeypatch, capsys, "push", str(work), "--repo", "me/x")
    assert code == 2 and "does not match its recorded SHA-256" in err
    merged = tmp_path / "merged"
    shutil.copytree(outputs / "merged", merged)
    (merged / "README.md").unlink()  # a merged model written before loralab wrote cards
    code, _, err = run_cli(monkeypatch, capsys, "push", str(merged), "--repo", "me/x")
    assert code == 2 and "has no loralab model card" in err
    assert hub.names("upload_folder") == []


def test_a_hub_that_refuses_is_one_line_exit_1(monkeypatch, capsys, outputs, hub):
    from huggingface_hub.errors import LocalTokenNotFoundError

    hub.fail_upload = LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")
    code, _, err = run_cli(monkeypatch, capsys, "push", str(outputs / "more"), "--repo", "me/x")
    assert code == 1 and err.count("\n") == 1 and "cannot upload" in err and "Token is required" in err
