"""Print the Markdown catalogue of every registered corruption: ``python -m corruptions.catalog``.

Generated from the registry (name, category, randomness, first docstring line, per-severity parameters),
so docs/corruptions.md never drifts from the code.
"""

from __future__ import annotations

import sys

from corruptions.registry import CATEGORIES, get_corruption, list_corruptions


def _fmt(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)) and len(value) > 6:
        return f"{_fmt(value[0])} … {_fmt(value[-1])} ({len(value)} values)"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def catalog_markdown() -> str:
    lines = []
    names = list_corruptions()
    for category in CATEGORIES:
        members = [n for n in names if get_corruption(n).category == category]
        if not members:
            continue
        lines += [f"### {category}", ""]
        for name in members:
            c = get_corruption(name)
            lines.append(f"**`{name}`** ({'random' if c.random else 'deterministic'}) — {c.description}")
            lines.append("")
            if c.params:
                lines += ["| severity | parameters |", "|---|---|"]
                lines += [f"| {s} | {_fmt(p)} |" for s, p in sorted(c.params.items())]
                lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(catalog_markdown() + "\n")
