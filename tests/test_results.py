"""results.csv: rows appended as text read back as pandas' own file would, and stores sharing a folder see each
other's rows (the store keeps the file's text between cells and must notice when someone else replaced it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustbench_in.evaluate import ResultStore
from robustbench_in.evaluate.results import RESULT_COLUMNS


def _row(cell_id: str, **values) -> dict:
    row = {column: None for column in RESULT_COLUMNS}
    return {**row, "model": "m", "corruption": "fog", "severity": 3, "seed": 0, "cell_id": cell_id, **values}


ROWS = [
    _row("a1", top1_err=0.1 + 0.2, n=np.int64(48), seconds=float("nan"), versions='torch=2.4, "x"'),
    _row("b2", top1_err=np.float64(1 / 3), n=7, images_per_s=np.nan, preprocessing="resize 256,crop 224"),
    _row("c3", top1_err=1e-20, n=0, device="cpu", weights="/tmp/w,1.pt", git_commit="deadbeef"),
]


def test_rows_appended_one_by_one_give_the_file_pandas_writes(tmp_path):
    """Missing values (None, NaN) empty, floats in their shortest repr, quoting as the csv module does."""
    store = ResultStore(tmp_path / "appended")
    for row in ROWS:
        store.append_rows([row])
    expected = tmp_path / "pandas.csv"
    pd.DataFrame(ROWS)[RESULT_COLUMNS].to_csv(expected, index=False)
    assert store.csv.read_text() == expected.read_text()
    pd.testing.assert_frame_equal(store.rows(), pd.read_csv(expected))


def test_a_cell_keeps_its_first_row_and_a_new_column_rewrites_the_file(tmp_path):
    store = ResultStore(tmp_path)
    store.append_rows([ROWS[0], {**ROWS[0], "top1_err": 0.9}])
    store.append_rows([_row("a1", top1_err=0.5), _row("d4", extra_metric=2.5)])
    rows = store.rows()
    assert rows["cell_id"].tolist() == ["a1", "d4"] and rows["top1_err"].iloc[0] == 0.1 + 0.2
    assert rows.columns[-1] == "extra_metric" and rows["extra_metric"].isna().tolist() == [True, False]
    store.append_rows([_row("e5", extra_metric=1.0)])  # the header has it now: appended as text again
    assert store.rows()["extra_metric"].tolist()[1:] == [2.5, 1.0]


def test_stores_sharing_a_folder_see_each_others_rows(tmp_path):
    first, second = ResultStore(tmp_path), ResultStore(tmp_path)
    first.append_rows([ROWS[0]])
    assert second.finished_cells() == {"a1"}
    second.append_rows([ROWS[1]])
    assert first.finished_cells() == {"a1", "b2"}  # its copy of the file is stale: read again
    first.append_rows([ROWS[2], ROWS[1]])
    assert ResultStore(tmp_path).rows()["cell_id"].tolist() == ["a1", "b2", "c3"]
    assert ResultStore(tmp_path / "empty").finished_cells() == set()


@pytest.mark.parametrize("content", [bytes(range(256)), b"a,b\n1,2\n", "cell_id\n".encode("utf-16")],
                         ids=["binary", "no cell_id column", "UTF-16"])
def test_a_file_that_is_no_results_table_is_a_one_line_error_naming_it(tmp_path, content):
    (tmp_path / "results.csv").write_bytes(content)
    with pytest.raises(ValueError, match=f"{tmp_path / 'results.csv'} is not a results table .*results_dir"):
        ResultStore(tmp_path).finished_cells()
    assert (tmp_path / "results.csv").read_bytes() == content  # left as it was


def test_an_empty_results_file_is_an_empty_table(tmp_path):
    (tmp_path / "results.csv").touch()
    store = ResultStore(tmp_path)
    assert store.finished_cells() == set() and store.rows().empty
    store.append_rows([ROWS[0]])
    assert store.rows()["cell_id"].tolist() == ["a1"]
