"""The LoRA library: one PEFT LoRA per (model, task), trained with one shared set of hyperparameters."""

from loralab.library.build import build_library, lora_config
from loralab.training.hparams import LoRAHparams, load_hparams
from loralab.library.importer import check_adapter_fits, import_adapter
from loralab.library.store import AdapterEntry, Library, model_slug

__all__ = ["AdapterEntry", "Library", "LoRAHparams", "build_library", "check_adapter_fits", "import_adapter",
           "load_hparams", "lora_config", "model_slug"]
