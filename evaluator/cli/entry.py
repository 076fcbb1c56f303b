"""The ``edl`` entry point: a Ctrl-C that lands while the commands are still being imported ends quietly too.

On a loaded machine importing the CLI (typer, rich, numpy) takes a noticeable moment; a Ctrl-C then
would print Python's traceback, before ``main`` can say anything. Nothing has been written by then.
"""

from __future__ import annotations

import sys

from evaluator.errors import INTERRUPTED_EXIT


def run() -> None:
    try:
        from evaluator.cli.main import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting: nothing was written\n")
        sys.exit(INTERRUPTED_EXIT)
    main()
