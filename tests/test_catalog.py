"""docs/corruptions.md carries the generated catalogue of every built-in corruption; it must match the code."""

from __future__ import annotations

from pathlib import Path

import corruptions
from corruptions.catalog import BEGIN, END, builtin_corruptions, catalog_markdown, refresh

DOC = Path(__file__).resolve().parents[1] / "docs" / "corruptions.md"


def test_docs_catalogue_is_up_to_date():
    text = DOC.read_text(encoding="utf-8")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == catalog_markdown().strip(), (
        "docs/corruptions.md is stale: run `python -m corruptions.catalog --write docs/corruptions.md`")


def test_catalogue_lists_every_builtin_with_its_parameters():
    names = (set(corruptions.IMAGENET_C) | set(corruptions.IMAGENET_C_EXTRA) | set(corruptions.SENSOR)
             | set(corruptions.IMAGENET_C_BAR))
    assert set(builtin_corruptions()) == names
    md = catalog_markdown()
    for name in names:
        assert f"**`{name}`**" in md
    assert "| 5 | sigma=0.38 |" in md  # gaussian_noise severity 5 (spec §3.1)


def test_refresh_rewrites_only_the_generated_block(tmp_path):
    doc = tmp_path / "c.md"
    doc.write_text(f"# head\n\n{BEGIN}\nSTALE-CATALOGUE\n{END}\n\ntail\n", encoding="utf-8")
    assert refresh(doc) is True
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# head\n") and text.endswith("\ntail\n") and "STALE-CATALOGUE" not in text
    assert "**`contrast`**" in text
    assert refresh(doc) is False  # idempotent


def test_docs_model_zoo_table_is_up_to_date():
    from robustbench_in.models import zoo_entries
    from robustbench_in.models.catalog import BEGIN as ZOO_BEGIN
    from robustbench_in.models.catalog import END as ZOO_END
    from robustbench_in.models.catalog import zoo_markdown

    text = (DOC.parent / "models.md").read_text(encoding="utf-8")
    block = text.split(ZOO_BEGIN, 1)[1].split(ZOO_END, 1)[0]
    assert block.strip() == zoo_markdown().strip(), (
        "docs/models.md is stale: run `python -m robustbench_in.models.catalog --write docs/models.md`")
    assert all(f"| `{name}` |" in block for name in zoo_entries())
