"""`loralab-lm-eval`: lm-evaluation-harness's own command line with the `loralab` model type registered.

lm-eval is an optional dependency (`pip install 'loralab[lmeval]'`); without it this command prints
one `error:` line naming the extra and exits with code 2, as every other missing optional package does.
"""

from __future__ import annotations

import sys

from loralab.cli.errors import print_error
from loralab.errors import LoralabError


def main() -> None:
    """Console entry point (`loralab-lm-eval = "loralab.cli.lmeval:main"`): every argument is lm-eval's."""
    from loralab.utils.extras import require_extra

    try:
        require_extra("lm_eval", "loralab-lm-eval")
    except LoralabError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    from loralab.recipes.lmeval import main as lm_eval_main  # importing it registers the model type

    lm_eval_main()
