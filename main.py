"""Hydra entry point: ``python main.py [task=eval|gallery|report] [model=...] [data=...] [suite=...]``."""

import os
import sys

# Transparent huge pages for PyTorch's CPU allocator (read once, at import): the corruptions stream whole batches
# through fresh buffers, and page faults on them were ~10% of CPU corruption time. Export 0 to turn it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from robustbench_in.app import cli_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_main())
