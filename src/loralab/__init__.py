"""loralab: multi-task LoRA libraries, LoRA-MoE methods, LoRA selection and one evaluation protocol."""

__version__ = "0.1.0"
