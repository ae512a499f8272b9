"""`python -m loralab.cli ...`: the same as the `loralab` console script."""

from loralab.cli.errors import main

main()
