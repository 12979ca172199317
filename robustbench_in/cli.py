"""The command line: ``robustbench-in`` / ``python main.py`` -> Hydra -> a registered task.

Hydra composes and validates the config (typos, types, unknown options, sweeps, ``--help``); this module only
turns what goes wrong into one line on stderr with a non-zero exit code, and keeps a sweep going when one of its
jobs has bad input. ``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import os

# Transparent huge pages for PyTorch's CPU allocator (read once, when torch is imported): the corruptions stream
# whole batches through fresh buffers, and page faults on them were ~10% of CPU corruption time. Export 0 to turn
# it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from robustbench_in.allocator import keep_freed_memory  # noqa: E402

keep_freed_memory()  # glibc reuses freed batches instead of unmapping them (robustbench_in/allocator.py)

import difflib  # noqa: E402
import errno  # noqa: E402
import hashlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields, is_dataclass  # noqa: E402
from typing import Any  # noqa: E402

from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from corruptions.registry import UnknownCorruptionError  # noqa: E402
from robustbench_in.config import Config, register_configs  # noqa: E402
from robustbench_in.data.datasets import DatasetError  # noqa: E402
from robustbench_in.models.registry import ModelError  # noqa: E402
from robustbench_in.tasks import TASKS, UserError  # noqa: E402

CONFIG_MODULE = "pkg://robustbench_in.conf"
USER_ERRORS = (UserError, DatasetError, ModelError, UnknownCorruptionError, OmegaConfBaseException, ValueError,
               FileNotFoundError, KeyError, ImportError)
#: What the machine can refuse mid-run (disk full, quota, read-only, permissions): one line, and the next run of
#: the same command resumes from the finished cells and shards.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
#: Hydra plugins that come with ``pip install 'robustbench_in[launchers]'``.
PLUGIN_GROUPS = {"hydra/launcher": "launchers"}
FAILED_JOBS: list[str] = []
SHOW_TRACEBACKS = False  # set from HYDRA_FULL_ERROR=1 by cli_main


def run(cfg: DictConfig):
    """Hydra task function: dispatch on ``cfg.task``; bad input -> one line (exit 2 for a single run)."""
    try:
        if cfg.task not in TASKS:
            close = difflib.get_close_matches(str(cfg.task), TASKS, n=1)
            raise UserError(f"unknown task {cfg.task!r}: use one of {', '.join(TASKS)}"
                            + (f" (did you mean {close[0]}?)" if close else ""))
        return TASKS[cfg.task](cfg)
    except Exception as err:  # noqa: BLE001 — re-raised unless it is the user's to fix
        if SHOW_TRACEBACKS or not is_user_error(err):
            raise
        msg = f"error: {one_line_error(err)}"
        print(msg, file=sys.stderr)
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
            FAILED_JOBS.append(msg)  # the other jobs of the sweep still run
            return None
        sys.exit(2)


# ------------------------------------------------------------------------------------------- one-line errors


def is_user_error(err: BaseException) -> bool:
    """Bad input or a refusing disk: one line for the user, not a traceback."""
    return isinstance(err, USER_ERRORS) or (isinstance(err, OSError) and err.errno in STORAGE_ERRNOS)


def _unknown_option(err: BaseException) -> str | None:
    """Hydra's MissingConfigException for ``group=option`` -> the group's options and the close matches."""
    from hydra.errors import MissingConfigException

    if not isinstance(err, MissingConfigException) or not err.options or not err.missing_cfg_file:
        return None
    group, _, option = err.missing_cfg_file.rpartition("/")
    options = sorted(err.options)
    close = difflib.get_close_matches(option, options, n=3)
    extra = (f"; other launchers are Hydra plugins: pip install hydra-{option.split('_')[0]}-launcher "
             f"(or 'robustbench_in[{PLUGIN_GROUPS[group]}]' for joblib and submitit)" if group in PLUGIN_GROUPS else "")
    return (f"unknown {group or 'config'} '{option}': choose one of {', '.join(options)}"
            + (f" (did you mean {', '.join(close)}?)" if close else "") + extra)


def one_line_error(err: BaseException) -> str:
    """Condense a Hydra/OmegaConf/our own error into one line naming the key and the fix."""
    hydra_option = _unknown_option(err)
    if hydra_option:
        return hydra_option
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        return (f"{err.filename or 'a file'}: {err.strerror or err}: free space or fix the permissions, then run "
                "the same command again (finished cells and shards are kept)")
    if err.__cause__ is not None and str(err).startswith(("Could not override", "Error merging override",
                                                          "Error instantiating")):
        err = err.__cause__
    text = str(err).strip()
    first = text.split("\n")[0].strip()
    full_key = ""
    for line in text.split("\n"):
        if line.strip().startswith("full_key:"):
            full_key = line.split(":", 1)[1].strip()
    if "not in" in first and "Key '" in first:
        key = first.split("'")[1]
        node = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        valid = _valid_keys(node)
        close = difflib.get_close_matches(key, valid, n=2)
        hint = f"did you mean {node + '.' if node else ''}{close[0]}?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown config key '{full_key or key}': {hint}"
    if "Missing mandatory value" in first:
        key = full_key or first.split(":")[-1].strip()
        return f"config key '{key}' must be set (e.g. {key}=...)"
    if full_key and full_key not in first:
        return f"{full_key}: {first}"
    return first


def _valid_keys(node: str) -> list[str]:
    """The keys of a node of the schema (``runtime`` -> batch_size, workers, ...)."""
    cls: Any = Config
    for part in [p for p in node.split(".") if p]:
        match = [f for f in fields(cls) if f.name == part]
        if not match or match[0].default_factory is None:  # type: ignore[misc]
            return []
        value = match[0].default_factory()  # type: ignore[misc]
        if not is_dataclass(value):
            return []
        cls = type(value)
    return [f.name for f in fields(cls)]


# ------------------------------------------------------------------------------------------------ entry


def run_dirname(override_dirname: str) -> str:
    """A short, filesystem-safe run folder name derived from the overrides (same command -> same folder)."""
    if not override_dirname:
        return "default"
    safe = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", override_dirname).strip("_")
    if len(safe) > 120:
        safe = safe[:100] + "-" + hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
    return safe


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("rbin_dirname"):
        OmegaConf.register_new_resolver("rbin_dirname", run_dirname)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``warning: ...`` on one line (Python's default adds the source line that raised it)."""
    print(f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}", file=file or sys.stderr)


def cli_main() -> int:
    """Run Hydra on ``sys.argv``; composition errors become one line and exit code 2."""
    global SHOW_TRACEBACKS
    import warnings

    import hydra
    from hydra.errors import HydraException

    warnings.showwarning = one_line_warning
    register_resolvers()
    register_configs()
    # Hydra prints composition errors over several lines unless HYDRA_FULL_ERROR is set, in which case it raises
    # them: raise, and print one line here (or the traceback, if the user asked for it).
    user_full_error = SHOW_TRACEBACKS = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(config_path=CONFIG_MODULE, config_name="config", version_base="1.3")(run)()
    except (HydraException, *USER_ERRORS) as err:
        if user_full_error:
            raise
        print(f"error: {one_line_error(err)}", file=sys.stderr)
        return 2
    finally:
        if not user_full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    if FAILED_JOBS:
        print(f"{len(FAILED_JOBS)} job(s) of the sweep failed:", *FAILED_JOBS, sep="\n", file=sys.stderr)
        return 1
    return 0
