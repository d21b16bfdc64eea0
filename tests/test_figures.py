"""The figures of a compare run: PNGs written, and the plotted numbers checked."""

import json

import keras
import matplotlib.image
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat import figures

NUM_STEPS = 3


def _history(rng, epochs: int) -> dict:
    ramp = np.linspace(0.3, 0.8, epochs)
    return {
        "loss": list(2.0 - ramp + rng.normal(0, 0.05, epochs)),
        "accuracy": list(ramp + 0.1),
        "robust_accuracy": list(ramp + rng.normal(0, 0.02, epochs)),
        "mean_weight": [1.0] * epochs,
        "weight_std": list(rng.uniform(0.0, 0.3, epochs)),
        "val_loss": list(1.8 - ramp),
        "val_accuracy": list(ramp + 0.12),
        "val_robust_accuracy": list(ramp - 0.05 + rng.normal(0, 0.02, epochs)),
    }


def _rows() -> list[dict]:
    """2 methods x 2 seeds of plausible compare rows; one run stopped an epoch early."""
    rng = np.random.default_rng(0)
    rows = []
    for method, clean, robust in (("mwat", 0.97, 0.70), ("pgd_at", 0.96, 0.66)):
        for seed in (0, 1):
            epochs = 2 if (method, seed) == ("pgd_at", 1) else 3
            worst = robust + rng.normal(0, 0.02)
            rows.append({
                "method": method, "seed": seed, "clean": clean + rng.normal(0, 0.01),
                "APGD-CE": worst + 0.02, "worst_case": worst, "train_seconds": 12.5,
                "history": _history(rng, epochs),
                "best": {"epoch": 1, "val_robust": robust, "clean": clean,
                         "worst_case": worst + 0.01},
                "robustness": {"attacks": [{"name": "APGD-CE"}, {"name": "APGD-T"}],
                               "eps": 0.3, "norm": "linf", "n": 32},
            })
    return rows


@pytest.fixture(scope="module")
def data():
    return km.data.load_embedded().subset(train=64, validation=16, test=32, seed=0)


@pytest.fixture(scope="module")
def model(data):
    """MWAT (the paper's BiLAW) trained one epoch with 16 training digits held out."""
    keras.utils.set_random_seed(0)
    train, meta = km.data.holdout_split(data.train, sizes=(16,), seed=0)
    attack = km.attacks.PGD(eps=0.1, step_size=0.04, num_steps=NUM_STEPS, seed=0)
    model = km.MWATModel(km.zoo.small_cnn(width=4), attack=attack, meta_data=meta, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(*train, batch_size=16, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def inspected(model, data):
    return figures.inspect_with_kappa(model, *data.test)


@pytest.fixture
def results_dir(tmp_path, model):
    for row in _rows():
        directory = tmp_path / "run" / row["method"] / f"seed{row['seed']}"
        directory.mkdir(parents=True)
        (directory / "result.json").write_text(json.dumps(row))
    model.save(tmp_path / "run" / "mwat" / "seed0" / "model.keras")
    np.savez(tmp_path / "run" / "mwat" / "seed0" / "weight_history.npz", **_weight_history())
    return tmp_path / "run"


def _weight_history(epochs: int = 3, n: int = 40) -> dict:
    """A WeightHistory record: random weights, labels and predictions."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, n)
    record = {"epoch": np.arange(epochs), "y": y, "index": np.arange(n)}
    for key in ("weight", "weight_clean", "weight_adv"):
        raw = rng.uniform(0.2, 2.0, (epochs, n))
        record[key] = raw / raw.mean(axis=1, keepdims=True)
    record["weight"] = record["weight_clean"]
    for key in ("margin_clean", "margin_adv"):
        record[key] = rng.uniform(-1, 1, (epochs, n))
    for key in ("pred_clean", "pred_adv"):
        record[key] = np.where(rng.uniform(size=(epochs, n)) < 0.6, y, (y + 1) % 10)
    return record


def test_logits_with_margin_reproduce_the_margin_and_the_peer_weights():
    grid = np.linspace(-1.0, 1.0, 41)
    y, logits = figures.logits_with_margin(grid)
    np.testing.assert_allclose(km.margins.probability_margin(y, logits).numpy(), grid,
                               atol=1e-8)
    # MAIL and WMMR depend on the logits only through the margin: real 10-class logits and
    # the constructed ones with the same margin get the same weight.
    rng = np.random.default_rng(1)
    real_y = rng.integers(0, 10, 64)
    real_logits = rng.normal(0, 3, (64, 10))
    margin = km.margins.probability_margin(real_y, real_logits).numpy()
    y2, logits2 = figures.logits_with_margin(margin)
    for weights in (km.weighting.mail, km.weighting.wmmr):
        np.testing.assert_allclose(weights(y2, logits2).numpy(),
                                   weights(real_y, real_logits).numpy(), rtol=1e-6)


def test_inspect_with_kappa_pairs_kappa_with_the_inspected_points(model, data, inspected):
    assert inspected["num_steps"] == NUM_STEPS
    kappa = inspected["kappa"]
    assert kappa is not None and kappa.shape == (len(data.y_test),)
    assert kappa.min() >= 0 and kappa.max() <= NUM_STEPS
    np.testing.assert_array_equal(inspected["y"], data.y_test)
    # The weights are normalised to mean 1 over the points, as in training.
    np.testing.assert_allclose(inspected["weight"].mean(), 1.0, rtol=1e-5)
    # The attack's generator is left as inspect_weights alone leaves it: a second call
    # draws new starts, as it would.
    state = model.attack.seed_generator.state.numpy().copy()
    figures.inspect_with_kappa(model, data.x_test[:4], data.y_test[:4])
    assert not np.array_equal(state, model.attack.seed_generator.state.numpy())


def test_inspect_with_kappa_runs_the_attack_once_with_its_trace(model, data):
    """No second run from a rewound generator: the margins, weights, predictions and kappa
    all come from the one attack run of ``inspect_weights``."""
    x, y = data.x_test[:8], data.y_test[:8]
    generator = model.attack.seed_generator
    start = generator.state.numpy().copy()
    plain = model.inspect_weights(x, y)
    advanced = generator.state.numpy().copy()
    generator.state.assign(start)
    info = figures.inspect_with_kappa(model, x, y)
    np.testing.assert_array_equal(generator.state.numpy(), advanced)
    assert not np.array_equal(start, advanced)
    for key in ("margin", "weight", "y"):
        np.testing.assert_array_equal(info[key], plain[key])
    # The predictions belong to the same adversarial examples: misclassified iff margin < 0.
    assert info["prediction"].dtype == np.int64 and info["kappa"].dtype == np.int64
    np.testing.assert_array_equal(info["prediction"] != info["y"], info["margin"] < 0)
    assert info["kappa"].max() <= NUM_STEPS


def test_weight_vs_margin_plots_the_library_weightings(model, data, inspected):
    figure, plotted = figures.weight_vs_margin(model, *data.test, inspected=inspected, bins=10)
    assert len(figure.axes) >= 2
    margin, weight = plotted["margin"], plotted["weight"]
    np.testing.assert_array_equal(margin, inspected["margin"])
    # Binned means are the means of the scatter points in each bin.
    edges = plotted["bin_edges"]
    assert plotted["bin_count"].sum() == len(margin)
    for b in range(len(edges) - 1):
        last = b == len(edges) - 2
        chosen = (margin >= edges[b]) & ((margin <= edges[b + 1]) if last
                                         else (margin < edges[b + 1]))
        assert plotted["bin_count"][b] == chosen.sum()
        if chosen.any():
            np.testing.assert_allclose(plotted["bin_mean"][b], weight[chosen].mean(),
                                       rtol=1e-6)  # float32 sums in another order
        else:
            assert np.isnan(plotted["bin_mean"][b])
    # MAIL: km.weighting.mail on logits with the grid's margins, MAILModel's defaults.
    y, logits = figures.logits_with_margin(plotted["curve_margin"])
    assert (plotted["mail_bias"], plotted["mail_slope"]) == (-1.5, 1.0)
    np.testing.assert_allclose(plotted["mail"], km.weighting.mail(y, logits, -1.5, 1.0).numpy())
    # WMMR: km.weighting.wmmr, rescaled to mean 1 over the points.
    py, plogits = figures.logits_with_margin(margin)
    raw = km.weighting.wmmr(py, plogits).numpy()
    np.testing.assert_allclose(plotted["wmmr_points"], raw / raw.mean(), rtol=1e-6)
    np.testing.assert_allclose(plotted["wmmr"], km.weighting.wmmr(y, logits).numpy()
                               / raw.mean(), rtol=1e-6)
    # GAIRAT: km.weighting.gairat of each point's kappa (mean 1 over the points), and the
    # curve over kappa = 0..K on the same scale.
    kappa = inspected["kappa"]
    np.testing.assert_allclose(plotted["gairat_points"],
                               km.weighting.gairat(kappa, NUM_STEPS).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(plotted["gairat_kappa"], np.arange(NUM_STEPS + 1))
    np.testing.assert_allclose(plotted["gairat_curve"][kappa], plotted["gairat_points"],
                               rtol=1e-6)
    for k in range(NUM_STEPS + 1):
        if (kappa == k).any():
            np.testing.assert_allclose(plotted["weight_per_kappa"][k], weight[kappa == k].mean(),
                                       rtol=1e-6)  # float32 sums in another order
    assert "GAIRAT depends on κ" in plotted["caption"]


def test_class_mean_weights_are_numpy_means_per_class(model, data, inspected):
    figure, plotted = figures.class_mean_weights(model, *data.test, inspected=inspected)
    assert len(figure.axes) == 1
    np.testing.assert_array_equal(plotted["classes"], np.arange(10))
    assert plotted["count"].sum() == len(data.y_test)
    for label in range(10):
        chosen = inspected["weight"][inspected["y"] == label]
        assert plotted["count"][label] == len(chosen)
        if len(chosen):
            np.testing.assert_allclose(plotted["mean"][label], chosen.mean(),
                                       rtol=1e-6)  # float32 sums in another order


def test_accuracy_scatter_means_and_stds_over_seeds():
    rows = _rows()
    _, plotted = figures.accuracy_scatter(rows)
    assert list(plotted["methods"]) == ["mwat", "pgd_at"]
    for method, entry in plotted["methods"].items():
        group = [row for row in rows if row["method"] == method]
        clean = np.array([row["clean"] for row in group])
        worst = np.array([row["worst_case"] for row in group])
        np.testing.assert_allclose(entry["clean_mean"], clean.mean())
        np.testing.assert_allclose(entry["clean_std"], clean.std(ddof=1))
        np.testing.assert_allclose(entry["robust_mean"], worst.mean())
        np.testing.assert_allclose(entry["robust_std"], worst.std(ddof=1))
        assert entry["seeds"] == [0, 1]
    _, best = figures.accuracy_scatter(rows, checkpoint="best")
    np.testing.assert_allclose(
        best["methods"]["mwat"]["robust_mean"],
        np.mean([row["best"]["worst_case"] for row in rows if row["method"] == "mwat"]))
    with pytest.raises(ValueError, match="empty"):
        figures.accuracy_scatter([])


def test_training_curves_mean_over_seeds_per_epoch():
    rows = _rows()
    _, plotted = figures.training_curves(rows)
    mwat = plotted["methods"]["mwat"]
    histories = [row["history"] for row in rows if row["method"] == "mwat"]
    for key in ("robust_accuracy", "val_robust_accuracy", "loss", "val_loss"):
        np.testing.assert_allclose(mwat[key], np.mean([h[key] for h in histories], axis=0))
    np.testing.assert_array_equal(mwat["epoch"], [1, 2, 3])
    # pgd_at's seed 1 stopped after 2 epochs: epoch 3 is seed 0's value alone.
    pgd = plotted["methods"]["pgd_at"]
    seed0, seed1 = (row["history"] for row in rows if row["method"] == "pgd_at")
    np.testing.assert_allclose(pgd["val_robust_accuracy"][:2],
                               (np.array(seed0["val_robust_accuracy"][:2])
                                + seed1["val_robust_accuracy"]) / 2)
    np.testing.assert_allclose(pgd["val_robust_accuracy"][2], seed0["val_robust_accuracy"][2])


def test_make_figures_writes_valid_pngs(results_dir, data, tmp_path):
    out = tmp_path / "img"
    paths = figures.make_figures(results_dir, out, data=data.test, n=24, seed=0,
                                 train_data=data.train, k=4)
    assert [p.name for p in paths] == [f"{name}.png" for name in figures.FIGURE_NAMES]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.shape[2] in (3, 4)


def test_make_figures_finds_an_mwat_variant_model(results_dir, data, tmp_path):
    """Without ``mwat/``, the weight figures use the first ``mwat+...`` variant's model."""
    (results_dir / "mwat").rename(results_dir / "mwat+meta_objective=both")
    paths = figures.make_figures(results_dir, tmp_path / "img", data=data.test, n=16, seed=0,
                                 train_data=data.train)
    assert [p.name for p in paths][:5] == [f"{name}.png" for name in figures.FIGURE_NAMES[:5]]


def test_make_figures_skips_what_is_missing(tmp_path, capsys):
    directory = tmp_path / "run"
    for row in _rows():
        path = directory / row["method"] / f"seed{row['seed']}"
        path.mkdir(parents=True)
        (path / "result.json").write_text(json.dumps(row))
    paths = figures.run(directory, tmp_path / "img")
    assert [p.name for p in paths] == ["accuracy_scatter.png", "training_curves.png"]
    printed = capsys.readouterr().out
    assert ("skipped weight_vs_margin, class_mean_weights, class_weight_distributions, "
            "weight_extremes_grid (no model at") in printed
    assert "skipped weights_over_epochs (no " in printed
    assert f"wrote {paths[0]}" in printed
    assert figures.make_figures(tmp_path / "empty", tmp_path / "img2") == []
    assert "no result.json" in capsys.readouterr().out


def test_a_loaded_mwat_model_shows_its_weights_without_its_meta_set(results_dir, model, data):
    loaded = keras.models.load_model(results_dir / "mwat" / "seed0" / "model.keras")
    assert not loaded.has_meta_set  # the meta set is data: not saved
    x, y = data.test
    keras.utils.set_random_seed(0)
    mine = model.inspect_weights(x, y)
    keras.utils.set_random_seed(0)
    theirs = loaded.inspect_weights(x, y)
    np.testing.assert_allclose(theirs["weight"], mine["weight"], rtol=1e-5)
    assert np.std(mine["weight"]) > 0  # trained: not the uniform weights


@pytest.fixture(scope="module")
def nonparametric_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    attack = km.attacks.PGD(eps=0.1, step_size=0.04, num_steps=NUM_STEPS, seed=0)
    model = km.MWATNonParametricModel(km.zoo.small_cnn(width=4), attack=attack, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))  # as a compare run's
    path = tmp_path_factory.mktemp("nonparametric") / "model.keras"
    model.save(path)
    return path


def test_the_nonparametric_variant_gets_a_meta_set_or_is_skipped(nonparametric_path, data,
                                                                  tmp_path, capsys):
    paths = figures.make_figures(tmp_path / "none", tmp_path / "img", data=data.test, n=16,
                                 model_path=nonparametric_path)
    assert paths == []
    assert "pass meta_data" in capsys.readouterr().out
    meta = data.validation
    paths = figures.make_figures(tmp_path / "none", tmp_path / "img", data=data.test, n=16,
                                 model_path=nonparametric_path, meta_data=meta,
                                 train_data=data.train)
    assert [p.name for p in paths] == [f"{name}.png" for name in figures.MODEL_FIGURES]
    # Without data and meta_data: the meta set keras-mwat compare holds out (embedded data).
    paths = figures.make_figures(tmp_path / "none", tmp_path / "img2", n=16,
                                 model_path=nonparametric_path)
    assert [p.name for p in paths] == [f"{name}.png" for name in figures.MODEL_FIGURES]


# ------------------------------------------------------- the paper's figures (issue 15)
def test_inspect_with_kappa_predicts_the_true_class_exactly_when_the_margin_is_positive(
        inspected):
    prediction, margin = inspected["prediction"], inspected["margin"]
    assert prediction is not None and prediction.shape == margin.shape
    # Def. 2.2: m = p_y - max_{j != y} p_j > 0 exactly when y is the arg max.
    clear = np.abs(margin) > 1e-6
    np.testing.assert_array_equal((prediction == inspected["y"])[clear], (margin > 0)[clear])


def test_confusion_matrix_counts_known_pairs():
    y = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    prediction = [0, 1, 1, 1, 1, 2, 0, 2, 2]
    np.testing.assert_array_equal(figures.confusion_matrix(y, prediction, 3),
                                  [[1, 2, 0], [0, 2, 0], [1, 0, 3]])
    with pytest.raises(ValueError, match="prediction"):
        figures.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="same length"):
        figures.confusion_matrix([0, 1], [0], 3)


def test_class_weight_distributions_on_known_confusions(model):
    """10 classes, 10 points each; class c loses c of them to class (c + 1) mod 10, and its
    weights are 0.5 + c / 10: the class mean tracks the error rate exactly."""
    y = np.repeat(np.arange(10), 10)
    within = np.tile(np.arange(10), 10)
    prediction = np.where(within < y, (y + 1) % 10, y)
    weight = 0.5 + y / 10 + np.where(within % 2, 0.05, -0.05)
    inspected = {"weight": weight, "y": y, "prediction": prediction, "margin": np.zeros(100)}
    figure, plotted = figures.class_weight_distributions(model, None, None, inspected=inspected)
    assert len(figure.axes) >= 2
    np.testing.assert_array_equal(plotted["count"], np.full(10, 10))
    for c in range(10):
        assert plotted["counts"][c, c] == 10 - c
        assert plotted["counts"][c, (c + 1) % 10] == c
        assert plotted["counts"][c].sum() == 10
    np.testing.assert_allclose(plotted["confusion"].sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(plotted["confusion"]), 1 - np.arange(10) / 10)
    np.testing.assert_allclose(plotted["class_error"], np.arange(10) / 10)
    np.testing.assert_allclose(plotted["class_mean"], 0.5 + np.arange(10) / 10)
    np.testing.assert_allclose(plotted["class_median"], 0.5 + np.arange(10) / 10)
    np.testing.assert_allclose(plotted["weight_error_correlation"], 1.0)
    # The opposite weighting is perfectly anti-correlated with the error.
    inspected["weight"] = 2.0 - weight
    _, flipped = figures.class_weight_distributions(model, None, None, inspected=inspected)
    np.testing.assert_allclose(flipped["weight_error_correlation"], -1.0)
    with pytest.raises(ValueError, match="prediction"):
        figures.class_weight_distributions(model, None, None,
                                           inspected={**inspected, "prediction": None})


def test_weight_extremes_grid_shows_the_argsort_extremes(model, data):
    x, y = data.train
    x, y = x[:30], y[:30]
    rng = np.random.default_rng(4)
    weight = (rng.permutation(30) + 1) / 10.0
    weight[[7, 3]] = 0.05  # a tie at the bottom: lower index first
    inspected = {"weight": weight, "y": y, "prediction": (y + 1) % 10, "margin": np.zeros(30)}
    figure, plotted = figures.weight_extremes_grid(model, x, y, k=5, inspected=inspected)
    np.testing.assert_array_equal(plotted["lowest"], np.argsort(weight, kind="stable")[:5])
    np.testing.assert_array_equal(plotted["highest"], np.argsort(-weight, kind="stable")[:5])
    assert plotted["lowest"][0] == 3 and 7 in plotted["lowest"]
    assert weight[plotted["highest"]].min() >= np.sort(weight)[-5]
    assert weight[plotted["lowest"]].max() <= np.sort(weight)[4]
    images = [ax for ax in figure.axes if ax.images]
    assert len(images) == 10
    np.testing.assert_array_equal(images[0].images[0].get_array(), x[3, ..., 0])
    with pytest.raises(ValueError, match="k=16"):
        figures.weight_extremes_grid(model, x, y, k=16, inspected=inspected)


def test_weight_extremes_grid_inspects_the_model_itself(model, data):
    x, y = data.train[0][:20], data.train[1][:20]
    _, plotted = figures.weight_extremes_grid(model, x, y, k=3)
    assert plotted["prediction"] is not None
    assert plotted["weight"][plotted["lowest"]].max() <= plotted["weight"][
        plotted["highest"]].min()


def test_weights_over_epochs_medians_per_group():
    record = _weight_history()
    figure, plotted = figures.weights_over_epochs(record, quantiles=(0.1, 0.9))
    assert len(figure.axes) >= 2
    np.testing.assert_array_equal(plotted["epoch"], [1, 2, 3])
    assert plotted["training_is"] == "clean"
    y = record["y"]
    for kind in ("clean", "adv"):
        for epoch in range(3):
            weight, correct = record[f"weight_{kind}"][epoch], record[f"pred_{kind}"][epoch] == y
            entry = plotted[kind]
            np.testing.assert_allclose(entry["median"]["correct"][epoch],
                                       np.median(weight[correct]))
            np.testing.assert_allclose(entry["median"]["wrong"][epoch],
                                       np.median(weight[~correct]))
            np.testing.assert_allclose(entry["low"]["all"][epoch], np.quantile(weight, 0.1))
            np.testing.assert_allclose(entry["high"]["wrong"][epoch],
                                       np.quantile(weight[~correct], 0.9))
            assert entry["count"]["correct"][epoch] + entry["count"]["wrong"][epoch] == len(y)
            np.testing.assert_allclose(entry["accuracy"][epoch], correct.mean())
    # A group empty at an epoch has NaN statistics there, not an error.
    record["pred_adv"][1] = record["y"]
    _, plotted = figures.weights_over_epochs(record)
    assert np.isnan(plotted["adv"]["median"]["wrong"][1])
    with pytest.raises(ValueError, match="quantiles"):
        figures.weights_over_epochs(record, quantiles=(0.9, 0.1))


def test_weights_over_epochs_reads_a_weight_history_file(tmp_path, model, data):
    path = tmp_path / "weight_history.npz"
    history = km.callbacks.WeightHistory(data.x_train[:8], data.y_train[:8], path)
    history.set_model(model)
    history.records = {0: history.weights_now()}
    history._write()
    _, plotted = figures.weights_over_epochs(path)
    np.testing.assert_array_equal(plotted["epoch"], [1])
    assert plotted["training_is"] == "clean"  # MWAT's default margin is the clean one


def test_the_figures_command_takes_the_dataset(tmp_path):
    from keras_mwat import cli

    args = cli.build_parser().parse_args(
        ["figures", "--results", str(tmp_path), "--dataset", "fashion_mnist", "--k", "6"])
    assert (args.dataset, args.data_dir, args.k) == ("fashion_mnist", None, 6)
    with pytest.raises(ValueError, match="dataset"):
        figures.make_figures(tmp_path, tmp_path / "img", dataset="mnist")
