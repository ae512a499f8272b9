"""The training engine every method and the library train through: answer-only loss on HF Trainer,
shared hyperparameters, crash-safe checkpoints and exact resume, one-task batches.

Modules: `hparams` (`LoRAHparams`, the one shared hyperparameter set), `features` (training and
validation features, the collator), `loss` (the answer-only loss), `trainer` (`train_adapter` with the
optional validation loss, the `StepLogs` protocol a model may offer for logging), `checkpoints`
(completeness, run fingerprints, the resume choice), `sampling` (one-task batches for multi-task training).
It imports no method, library or orchestration code: those sit above it.
"""

from loralab.training.hparams import LoRAHparams, load_hparams

__all__ = ["LoRAHparams", "load_hparams"]
