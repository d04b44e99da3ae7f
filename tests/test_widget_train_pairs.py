"""The Train widget's pairs-CSV field: a file picker for *.csv that chooses the data set,
in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def pairs_csv(tmp_path):
    """Two scans as TIFF pairs (their central slices), listed in a pairs CSV."""
    import tifffile

    rng = np.random.default_rng(0)
    rows = ["input,target"]
    for name, n in (("a", 2), ("b", 1)):
        y = rng.standard_normal((n, 40, 40)).astype(np.float32)
        for kind, a in (("input", y + 0.3), ("target", y)):
            tifffile.imwrite(tmp_path / f"{name}-{kind}.tif", a.astype(np.float32))
        rows.append(f"{tmp_path / f'{name}-input.tif'},{tmp_path / f'{name}-target.tif'}")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_pairs_csv_is_a_csv_file_picker_that_sets_the_data_set(
    make_napari_viewer, pairs_csv, tmp_path
):
    from magicgui.types import FileDialogMode
    from magicgui.widgets import FileEdit

    from napari_dfct.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    f = widget.fields
    assert isinstance(f.pairs_csv, FileEdit)
    assert f.pairs_csv.mode == FileDialogMode.EXISTING_FILE  # read mode: an existing file
    assert f.pairs_csv.filter == "*.csv"
    assert f.pairs_csv.tooltip
    assert f.pairs_csv.native.isHidden()  # with the data-set source only
    f.source.value = "dataset"
    assert not f.pairs_csv.native.isHidden()
    f.pairs_csv.value = pairs_csv
    assert str(f.dataset.value) == str(pairs_csv)
    assert "2 scans, 2 slices" in f.data_summary.value
    # another data set (a folder) clears the CSV field: no stale choice on screen
    (tmp_path / "other").mkdir()
    f.dataset.value = tmp_path / "other"
    assert f.pairs_csv.value is None
    assert "holds no scans" in f.data_summary.value
