"""keras-mwat compare records MWAT's weight history; keras-mwat figures draws every figure."""

import matplotlib.image
import numpy as np

from keras_mwat import figures
from keras_mwat.callbacks import WEIGHT_HISTORY_KEYS
from keras_mwat.cli import main


def test_compare_records_the_weights_and_figures_draws_all(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["compare", "--methods", "mwat,pgd_at", "--epochs", "2", "--subset", "96",
                 "--test-subset", "48", "--train-steps", "2", "--eval-attacks", "pgd",
                 "--eval-steps", "2", "--eval-restarts", "1", "--best-eval", "none",
                 "--eps", "0.1", "--verbose", "0", "--resume", str(run)]) == 0
    # MWAT learns its weights: a fixed probe of training points, one row per epoch.
    with np.load(run / "mwat" / "seed0" / "weight_history.npz") as saved:
        np.testing.assert_array_equal(saved["epoch"], [0, 1])
        n = len(saved["y"])
        assert 0 < n <= 500
        assert len(np.unique(saved["index"])) == n  # distinct training points
        for key in WEIGHT_HISTORY_KEYS:
            assert saved[key].shape == (2, n)
    # PGD-AT's weights are uniform: nothing to record.
    assert not (run / "pgd_at" / "seed0" / "weight_history.npz").exists()
    capsys.readouterr()

    assert main(["figures", "--results", str(run), "--out", str(tmp_path / "img"),
                 "--n", "40", "--k", "4"]) == 0
    printed = capsys.readouterr().out
    for name in figures.FIGURE_NAMES:
        path = tmp_path / "img" / f"{name}.png"
        assert f"wrote {path}" in printed
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
