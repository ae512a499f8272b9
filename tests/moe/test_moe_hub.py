"""`MoEModel.save_pretrained` / `from_pretrained` / `push_to_hub`, like PeftModel's, with the hub mocked.

A local folder is read offline; a repo id is downloaded with `huggingface_hub.snapshot_download` and goes
through the same hash-checked loader; `push_to_hub` uploads what `save_pretrained` writes with `HfApi`
(`create_repo`, `upload_folder`). The hub here is `fake_hub.FakeHub`: no network, every call recorded.
"""

from __future__ import annotations

import json

import pytest
import torch
from fake_hub import FakeHub, folder_bytes
from helpers import toy_task
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from loralab.errors import AdapterError, HubError, UserInputError
from loralab.library import LoRAHparams
from loralab.models import build_tiny_model
from loralab.moe.model import CONFIG_FILE, WEIGHTS_FILE, MoEModel
from loralab.recipes.train import build_method, train_method

HP = LoRAHparams(max_steps=2, batch_size=4, learning_rate=1e-2)
IDS = torch.tensor([[5, 17, 42, 99, 3, 250]])


def trained_more(tmp_path):
    """A MoRE checkpoint on tiny-llama trained on two tasks (its weights are no longer the initial ones)."""
    out = tmp_path / "more"
    train_method("more", build_tiny_model("llama", seed=0), [toy_task("alpha", n=16), toy_task("beta", n=16)], out,
                 config={"rank": 4}, hparams=HP, progress=False)
    return out


def logits(model, task: str = "alpha") -> torch.Tensor:
    with torch.no_grad(), model.routing(task=task):
        return model(input_ids=IDS).logits


@pytest.fixture
def hub(monkeypatch, tmp_path) -> FakeHub:
    return FakeHub.install(monkeypatch, tmp_path / "hub")


def test_from_pretrained_a_local_folder_offline_on_the_recorded_base_model(tmp_path, hub):
    out = trained_more(tmp_path)
    moe = MoEModel.from_pretrained(out)  # base model: the recorded one (tiny-llama), loaded by load_model
    assert isinstance(moe, MoEModel) and moe.method == "more" and moe.tasks == ["alpha", "beta"]
    saved = load_file(str(out / WEIGHTS_FILE))
    state = moe.adapter_state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert hub.calls == []  # a local folder never touches the hub


def test_from_pretrained_takes_a_module_a_loaded_model_or_a_name_and_leaves_a_module_unchanged(tmp_path):
    out = trained_more(tmp_path)
    lm = build_tiny_model("llama", seed=0)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    from_module = MoEModel.from_pretrained(out, base_model=lm.model)
    from_loaded = MoEModel.from_pretrained(out, base_model=lm)
    from_name = MoEModel.from_pretrained(out, base_model="tiny-llama")
    torch.testing.assert_close(logits(from_module), logits(from_name), rtol=0, atol=0)
    torch.testing.assert_close(logits(from_loaded), logits(from_name), rtol=0, atol=0)
    assert not any(getattr(m, "is_loralab_layer", False) for m in lm.model.modules())  # still the plain base
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert not torch.equal(logits(from_name), lm.model(input_ids=IDS).logits.detach())  # the method is applied


def test_save_pretrained_writes_a_card_that_the_weights_hash_does_not_cover(tmp_path):
    out = trained_more(tmp_path)
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert set(meta["files"]) == {WEIGHTS_FILE}  # the card is documentation: editable without breaking loading
    assert meta["base_model"] == "tiny-llama"  # a built-in random model is named by its alias, never ""
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "loralab"
    info = card.data.to_dict()["loralab"]
    assert info["kind"] == "method-checkpoint" and info["method"] == "more" and info["tasks"] == ["alpha", "beta"]
    (out / "README.md").write_text("# edited on the hub\n", encoding="utf-8")
    assert MoEModel.from_pretrained(out).method == "more"


def test_push_to_hub_then_from_pretrained_round_trips_bit_for_bit(tmp_path, hub):
    lm = build_tiny_model("llama", seed=0)
    moe = build_method("more", lm, ["alpha", "beta"], config={"rank": 4})
    with torch.no_grad():  # non-trivial weights, so a round trip that dropped or reordered a tensor shows
        for name, param in moe.named_parameters():
            if param.requires_grad:
                param.copy_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
    moe.eval()
    want = logits(moe, "beta")
    url = moe.push_to_hub("me/more-tiny", private=True, token="hf_test", commit_message="first")
    assert url == "https://huggingface.co/me/more-tiny/commit/0123abc"
    (create,) = [kw for name, kw in hub.calls if name == "create_repo"]
    assert create["repo_id"] == "me/more-tiny" and create["private"] is True and create["exist_ok"] is True
    (upload,) = [kw for name, kw in hub.calls if name == "upload_folder"]
    assert upload["commit_message"] == "first" and upload["repo_type"] == "model"
    uploaded = folder_bytes(hub.repos["me/more-tiny"])
    assert set(uploaded) == {CONFIG_FILE, WEIGHTS_FILE, "README.md"}
    assert ("HfApi", {"token": "hf_test"}) in hub.calls

    back = MoEModel.from_pretrained("me/more-tiny", base_model=build_tiny_model("llama", seed=0), revision="v1")
    (download,) = [kw for name, kw in hub.calls if name == "snapshot_download"]
    assert download["repo_id"] == "me/more-tiny" and download["revision"] == "v1"
    local = next((hub.root / "cache").glob("me--more-tiny/*"))
    assert folder_bytes(local) == uploaded  # the downloaded folder is what was uploaded, byte for byte
    original, loaded = moe.adapter_state_dict(), back.adapter_state_dict()
    assert set(original) == set(loaded) and all(torch.equal(original[k], loaded[k]) for k in original)
    torch.testing.assert_close(logits(back, "beta"), want, rtol=0, atol=0)


def test_a_downloaded_checkpoint_is_hash_checked_like_a_local_one(tmp_path, hub):
    out = trained_more(tmp_path)
    MoEModel.from_pretrained(out).push_to_hub("me/more")
    weights = hub.repos["me/more"] / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match="method_model.safetensors does not match its recorded SHA-256"):
        MoEModel.from_pretrained("me/more")


def test_download_failures_and_wrong_folders_are_one_line(tmp_path, hub):
    with pytest.raises(AdapterError, match="cannot download method checkpoint 'me/absent' from the Hugging Face hub"):
        MoEModel.from_pretrained("me/absent", base_model="tiny-llama")
    with pytest.raises(AdapterError, match="no such folder, and not a hub repo id"):
        MoEModel.from_pretrained(str(tmp_path / "missing"), base_model="tiny-llama")
    peft_out = tmp_path / "lora"
    train_method("multitask_lora", build_tiny_model("llama", seed=0), [toy_task("alpha", n=8)], peft_out,
                 hparams=LoRAHparams(max_steps=1, batch_size=4), progress=False)
    with pytest.raises(AdapterError, match="not a loralab method checkpoint.*PEFT adapter"):
        MoEModel.from_pretrained(peft_out, base_model="tiny-llama")


def test_push_failures_are_one_line_and_a_bad_repo_id_uploads_nothing(tmp_path, hub):
    from huggingface_hub.errors import LocalTokenNotFoundError

    moe = build_method("more", build_tiny_model("llama", seed=0), ["alpha"], config={"rank": 4})
    with pytest.raises(UserInputError, match="repo_id 'not a repo' is not a hub repo id"):
        moe.push_to_hub("not a repo")
    assert hub.names("create_repo") == []
    hub.fail_upload = LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")
    with pytest.raises(HubError, match="cannot upload .* to 'me/more' on the Hugging Face hub: Token is required"):
        moe.push_to_hub("me/more")
