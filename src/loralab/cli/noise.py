"""What the libraries under the CLI may print, by verbosity: quiet by default, everything with -v, errors only with -q.

* default: the known deprecation warnings of transformers/PEFT internals (`KNOWN_WARNINGS`, which a loralab
  user can do nothing about) and the Hugging Face progress bars ("Loading weights: ...") are hidden;
  every other warning and transformers' own warnings are shown.
* `-v`: all of them are shown.
* `-q`: no warning at all, transformers' messages from errors up, and no progress bar (loralab's own
  included); what is left is errors and the command's final result.

Only the libraries' own switches are used: `warnings` filters scoped to the known messages, huggingface_hub's
`disable_progress_bars` (which transformers reads when it is imported), transformers' `TRANSFORMERS_VERBOSITY`
before it is imported and its `disable_progress_bar` / `set_verbosity` once it is (so that commands that load no
model never import it). Nothing is patched. A user's own choice wins: Python's `-W` /
`PYTHONWARNINGS`, `HF_HUB_DISABLE_PROGRESS_BARS` and `TRANSFORMERS_VERBOSITY` are left as they are.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Literal

Verbosity = Literal["quiet", "normal", "verbose"]

# (category, message regex, module regex of where it is raised). Each is raised by a library on loralab's normal
# path and concerns that library's own code, not anything a loralab user chose.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # PEFT's PeftModel reads this deprecated property of every model it wraps (transformers >= 5)
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
)


def apply(verbosity: Verbosity) -> None:
    """Set what the libraries print for this invocation (called again with the options after the verb)."""
    from loralab.utils.progress import enable_progress_bars

    _warnings(verbosity)
    _hub_progress_bars(verbosity == "verbose")
    _transformers(verbosity)
    enable_progress_bars(verbosity != "quiet")


def _warnings(verbosity: Verbosity) -> None:
    if sys.warnoptions:  # the user chose with -W or PYTHONWARNINGS
        return
    action = "default" if verbosity == "verbose" else "ignore"
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings(action, message=message, category=category, module=module)
    if verbosity == "quiet":
        warnings.simplefilter("ignore")


def _hub_progress_bars(enabled: bool) -> None:
    from huggingface_hub import constants
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if constants.HF_HUB_DISABLE_PROGRESS_BARS is None:  # set in the environment, it decides (and the hub warns)
        if enabled:
            enable_progress_bars()
        else:
            disable_progress_bars()


_VERBOSITY_ENV = "TRANSFORMERS_VERBOSITY"
_env_is_ours = False  # whether TRANSFORMERS_VERBOSITY was set by `apply` (so a later call may change it)


def _transformers(verbosity: Verbosity) -> None:
    """transformers' verbosity (errors only under -q) and its progress bars, without importing it when it is not
    imported yet: its own environment switch then sets the level it starts with (in Ray workers started from
    here too), and it reads huggingface_hub's progress-bar state when imported."""
    global _env_is_ours
    users_choice = bool(os.environ.get(_VERBOSITY_ENV)) and not _env_is_ours
    if not users_choice:
        if verbosity == "quiet":
            os.environ[_VERBOSITY_ENV] = "error"
            _env_is_ours = True
        elif _env_is_ours:
            del os.environ[_VERBOSITY_ENV]
            _env_is_ours = False
    if "transformers" not in sys.modules:
        return
    from huggingface_hub import constants
    from transformers.utils import logging as hf_logging

    if constants.HF_HUB_DISABLE_PROGRESS_BARS is None:
        if verbosity == "verbose":
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
    if not users_choice:
        hf_logging.set_verbosity(logging.ERROR if verbosity == "quiet" else logging.WARNING)
