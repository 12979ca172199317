"""robustbench_in.allocator: freed batches are reused, not unmapped and faulted in again (Linux, glibc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import resource, numpy as np
from robustbench_in.allocator import keep_freed_memory
kept = keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
batch = np.ones(64 << 20, np.uint8); del batch
before = faults(); batch = np.ones(64 << 20, np.uint8); after = faults()
print(kept, after - before)
"""


def _second_batch_faults(setting: str) -> tuple[bool, int]:
    """(whether the setting took, page faults of a 64 MB buffer allocated and filled again after a free)."""
    env = {**os.environ, "RBIN_KEEP_FREED_MEMORY": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_freed_batch_is_reused_without_page_faults_unless_turned_off():
    kept, faults = _second_batch_faults("1")
    off, default_faults = _second_batch_faults("0")
    assert kept and not off
    assert default_faults > 100, "glibc no longer unmaps a freed 64 MB block: the setting may be moot"
    assert faults * 10 < default_faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_command_line_turns_it_on_at_import():
    """Importing the command line (what main.py and robustbench-in do first) is enough: no call needed."""
    probe = PROBE.replace("from robustbench_in.allocator import keep_freed_memory\nkept = keep_freed_memory()",
                          "import robustbench_in.cli\nkept = True")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "RBIN_KEEP_FREED_MEMORY": "1"})
    assert int(out.stdout.split()[1]) * 10 < _second_batch_faults("0")[1]
