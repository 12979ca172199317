"""Hydra entry point: ``python main.py [task=eval|gallery|report] [model=...] [data=...] [suite=...]``.

The same as the installed ``robustbench-in`` command."""

import sys

from robustbench_in.cli import cli_main

if __name__ == "__main__":
    sys.exit(cli_main())
