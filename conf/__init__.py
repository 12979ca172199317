"""Hydra configs, shipped inside the installed package as ``robustbench_in.conf`` (see pyproject.toml)."""
