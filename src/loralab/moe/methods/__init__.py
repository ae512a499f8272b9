"""Built-in methods; importing this package registers each of them (one module per method)."""

from loralab.moe.methods import loramoe, rocket, xlora  # noqa: F401
