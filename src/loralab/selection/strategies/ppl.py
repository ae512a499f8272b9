"""`ppl`: the LoRAs under which the target's answers are least surprising.

For each candidate LoRA, the perplexity of the gold answer tokens of the first `n_examples` target
examples (train split by default, never test): exp(summed answer-token NLL / number of answer
tokens), the loss the library was trained with (`training_features` + `answer_only_loss`: prompt
tokens carry no loss, logits only where an answer token is predicted). The lowest k win.

All candidates are scored on one `PeftModel` on the already loaded base model: each adapter is
loaded (after its library hash check), activated, scored and deleted before the next, so the base
model loads once and at most two LoRAs are in memory. The base model is unwrapped again afterwards,
also on error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from loralab.errors import AdapterError
from loralab.selection.base import SelectionContext, Selector
from loralab.selection.examples import ExampleOptions, chunks
from loralab.selection.registry import register_selector

logger = logging.getLogger(__name__)


@dataclass
class PerplexityConfig(ExampleOptions):
    """Options of `ppl`: see `ExampleOptions` (n_examples, split, batch_size, max_length)."""


@register_selector
class PerplexitySelector(Selector):
    name = "ppl"
    description = "lowest answer-token perplexity of each LoRA on a few target train examples"
    score_name = "perplexity"
    baseline = True
    higher_is_better = False
    needs_model = True
    config_cls = PerplexityConfig

    def prepare(self, context: SelectionContext) -> None:
        self.config.target_examples(context.target)  # an empty split fails before the model loads

    def scores(self, context: SelectionContext) -> dict[str, float]:
        from peft import PeftModel

        from loralab.training.hparams import LoRAHparams
        from loralab.training.trainer import PadCollator, training_features
        from loralab.utils.progress import progress_bar

        lm, cfg = context.lm, self.config
        assert lm is not None, "ppl needs the model"
        examples = cfg.target_examples(context.target)
        hp = LoRAHparams(max_length=cfg.length_limit(lm.model))
        features = training_features(context.target, lm.tokenizer, hp, examples)
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        batches = [PadCollator(pad)(list(chunk)) for chunk in chunks(features, cfg.batch_size)]
        scores: dict[str, float] = {}
        peft_model = None
        try:
            with progress_bar(len(context.candidates), "ppl", context.progress) as advance:
                for i, entry in enumerate(context.candidates):
                    context.library.verify(entry)  # never load a tampered or truncated adapter
                    name = f"candidate{i}"  # task names may hold '.', which PEFT adapter names cannot
                    try:
                        if peft_model is None:
                            peft_model = PeftModel.from_pretrained(lm.model, str(entry.path), adapter_name=name,
                                                                   is_trainable=False)
                        else:
                            previous = peft_model.active_adapter
                            peft_model.load_adapter(str(entry.path), adapter_name=name, is_trainable=False)
                            peft_model.set_adapter(name)
                            peft_model.delete_adapter(previous)
                    except (RuntimeError, ValueError, KeyError) as exc:
                        first = str(exc).strip().splitlines()[0][:300]
                        raise AdapterError(f"{entry.path}: library LoRA does not fit the base model: "
                                           f"{first}") from None
                    peft_model.eval()  # no LoRA dropout while scoring
                    scores[entry.task] = answer_perplexity(peft_model, batches)
                    logger.debug("ppl %s on %s: %.4f", entry.task, context.target.name, scores[entry.task])
                    advance(1)
        finally:
            if peft_model is not None:
                lm.model = peft_model.unload()  # the plain base model again, for the caller
        return scores


@torch.inference_mode()
def answer_perplexity(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """exp(mean NLL over every answer token of `batches`), with the training loss's own code path."""
    from loralab.training.trainer import answer_only_loss

    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        loss, n_tokens, _ = answer_only_loss(model, {k: v.to(device) for k, v in batch.items()}, None)
        n = int(n_tokens)
        total += float(loss) * n  # the loss is the mean over this batch's answer tokens
        count += n
    if count == 0:
        return math.inf  # no answer token survived truncation: nothing speaks for this LoRA
    mean_nll = total / count
    return math.exp(mean_nll) if mean_nll < 700 else math.inf  # exp overflows a float past ~709
