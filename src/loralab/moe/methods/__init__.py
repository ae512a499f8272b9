"""Built-in methods, one module each; `loralab.moe.registry` imports every module here (each registers itself)."""
