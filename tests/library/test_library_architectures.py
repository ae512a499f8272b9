"""Every tiny architecture builds a library adapter that plain PEFT loads, on every linear layer found by type."""

import pytest
import torch
from peft import PeftModel

from loralab.library import LoRAHparams, build_library
from loralab.models import TINY_ARCHITECTURES, build_tiny_model, find_linear_targets

from helpers import toy_task


def test_at_least_17_architectures():
    assert len(TINY_ARCHITECTURES) >= 17


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_build_train_and_reload(tmp_path, arch):
    lm = build_tiny_model(arch, seed=0)
    targets = set(find_linear_targets(lm.model))
    (entry,) = build_library(lm, [toy_task(n=16)], tmp_path / "lib",
                             hparams=LoRAHparams(max_steps=2, batch_size=2, learning_rate=1e-2), eval_limit=0,
                             progress=False)
    assert torch.isfinite(torch.tensor(entry.metrics["train_loss"]))
    fresh = build_tiny_model(arch, seed=0)
    peft_model = PeftModel.from_pretrained(fresh.model, str(entry.path))
    wrapped = {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == targets
    ids = torch.tensor([fresh.tokenizer.encode("Q: is 2 even?\nA: yes", add_special_tokens=False)])
    with torch.no_grad():
        assert torch.isfinite(peft_model(input_ids=ids).logits).all()
