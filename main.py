"""Hydra entry point: ``python main.py [task=eval|gallery|report] [model=...] [data=...] [suite=...]``."""

import sys

from robustbench_in.app import cli_main

if __name__ == "__main__":
    sys.exit(cli_main())
