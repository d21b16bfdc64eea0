"""The command line end to end, with a tiny setting."""

import json

import keras
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.cli import build_parser, main


def test_train_end_to_end_writes_a_run_directory(tmp_path, capsys):
    code = main(["train", "--epochs", "1", "--subset", "128", "--test-subset", "64",
                 "--train-steps", "2", "--seed", "3", "--out", str(tmp_path),
                 "--verbose", "0"])
    assert code == 0
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["method"] == "mwat"
    # The default evaluation is the "quick" cascade, stored with its settings.
    assert metrics["eval_attacks"] == "quick"
    assert list(metrics["per_attack"]) == ["PGD-20x2", "APGD-CE"]
    attacks = metrics["robustness"]["attacks"]
    assert attacks[0]["config"]["num_steps"] == 20 and attacks[0]["config"]["num_restarts"] == 2
    assert all(entry["config"]["eps"] == 0.3 for entry in attacks)
    assert 0.0 <= metrics["robust_accuracy"] <= metrics["clean_accuracy"] <= 1.0
    assert metrics["robust_accuracy"] == metrics["per_attack"]["APGD-CE"]
    assert metrics["test_samples"] == 64 and metrics["robustness"]["n"] == 64
    saved = km.RobustnessReport.load(runs[0] / "robustness.json")
    assert saved.robust_accuracy == metrics["robust_accuracy"]
    out = capsys.readouterr().out
    assert "clean accuracy" in out and "robust accuracy" in out and "APGD-CE" in out
    model = keras.models.load_model(runs[0] / "model.keras")
    x = np.zeros((2, 28, 28, 1), "float32")
    assert model.predict(x, verbose=0).shape == (2, 10)

    # keras-mwat export on the trained run's model: a SavedModel serving the same logits.
    import tensorflow as tf

    assert main(["export", "--model", str(runs[0] / "model.keras"), "--out",
                 str(tmp_path / "served")]) == 0
    serving = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    outputs = serving(image=tf.constant(x))
    np.testing.assert_allclose(outputs["logits"].numpy(), model.predict(x, verbose=0),
                               atol=1e-5)

    # keras-mwat evaluate on the saved model: eps and norm from its training attack.
    assert main(["evaluate", "--model", str(runs[0] / "model.keras"), "--attacks", "quick",
                 "--n", "40", "--no-checks", "--verbose", "0",
                 "--output", str(tmp_path / "report.json")]) == 0
    report = km.RobustnessReport.load(tmp_path / "report.json")
    assert report.n == 40 and report.eps == 0.3 and report.norm == "linf"
    assert [entry["name"] for entry in report.attacks] == ["PGD-20x2", "APGD-CE"]
    assert "worst case" in capsys.readouterr().out


def test_parser_rejects_negative_eps():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--eps", "-0.1"])


@pytest.mark.integration
def test_compare_trains_each_method_on_equal_footing(tmp_path, capsys):
    code = main(["compare", "--methods", "pgd_at,trades,gairat", "--epochs", "1",
                 "--subset", "96", "--test-subset", "48", "--train-steps", "2",
                 "--eval-attacks", "pgd", "--eval-steps", "3", "--eval-restarts", "1",
                 "--best-eval", "none", "--seed", "1", "--out", str(tmp_path),
                 "--verbose", "0"])
    assert code == 0
    (run,) = list(tmp_path.iterdir())
    report = json.loads((run / "compare.json").read_text())
    assert [row["method"] for row in report["rows"]] == ["pgd_at", "trades", "gairat"]
    for row in report["rows"]:
        assert 0.0 <= row["worst_case"] <= row["PGD-3"] <= row["clean"] <= 1.0
        assert row["train_seconds"] > 0 and row["seed"] == 1 and "best" not in row
        (entry,) = row["robustness"]["attacks"]
        assert entry["config"]["num_steps"] == 3 and entry["config"]["num_restarts"] == 1
    assert report["seeds"] == [1] and report["test_samples"] == 48
    table = (run / "compare.md").read_text()
    assert ("| method | seeds | clean | PGD-3 | worst case | Δ worst case vs pgd_at (paired) "
            "| train s |") in table
    assert "| trades | 1 |" in capsys.readouterr().out
    for method in ("pgd_at", "trades", "gairat"):
        assert (run / method / "seed1" / "model.keras").exists()


@pytest.mark.integration
def test_compare_over_seeds_with_best_checkpoint_and_resume(tmp_path, capsys):
    arguments = ["compare", "--methods", "pgd_at", "--epochs", "2", "--subset", "64",
                 "--test-subset", "32", "--train-steps", "1", "--eval-attacks", "pgd",
                 "--eval-steps", "2", "--eval-restarts", "1", "--best-eval", "quick",
                 "--seeds", "0,1", "--eps-warmup-epochs", "0", "--verbose", "0",
                 "--resume", str(tmp_path / "run")]
    report = main(arguments) or json.loads((tmp_path / "run" / "compare.json").read_text())
    rows = report["rows"]
    assert [row["seed"] for row in rows] == [0, 1]
    for row in rows:
        assert row["best"]["epoch"] in (0, 1)
        assert row["best"]["attacks"] == "quick"
        assert 0.0 <= row["best"]["worst_case"] <= row["best"]["clean"] <= 1.0
    # mean ± std over the two seeds, computed independently
    clean = np.array([row["clean"] for row in rows])
    expected = f"{clean.mean():.4f} ± {clean.std(ddof=1):.4f}"
    summary = (tmp_path / "run" / "compare.md").read_text()
    assert expected in summary
    assert "## Best checkpoint against last epoch" in summary
    assert summary.count("(quick) /") == 2  # one line per run
    capsys.readouterr()
    # Resuming reads the finished runs back instead of training again.
    main(arguments)
    assert capsys.readouterr().out.count("done before, read back") == 2
    # --report-only tabulates what is finished and trains nothing new.
    only = [a if a != "0,1" else "0,1,2" for a in arguments] + ["--report-only"]
    report = json.loads((tmp_path / "run" / "compare.json").read_text())
    main(only)
    assert "seed 2: not finished, left out" in capsys.readouterr().out
    assert not (tmp_path / "run" / "pgd_at" / "seed2" / "result.json").exists()
    assert json.loads((tmp_path / "run" / "compare.json").read_text())["rows"] == report["rows"]


def test_summary_pairs_the_worst_case_difference_by_seed():
    from keras_mwat.experiments.summary import summarize

    def row(method, seed, worst):
        return {"method": method, "seed": seed, "clean": 0.9, "PGD-3": worst + 0.1,
                "worst_case": worst, "train_seconds": 1.0,
                "robustness": {"attacks": [{"name": "PGD-3"}]}}

    rows = [row("pgd_at", 0, 0.60), row("pgd_at", 1, 0.70), row("pgd_at", 2, 0.65),
            row("mwat", 0, 0.62), row("mwat", 1, 0.71), row("mwat", 2, 0.69),
            row("trades", 0, 0.75)]
    table = summarize(rows)
    differences = np.array([0.02, 0.01, 0.04])
    expected = f"+{differences.mean():.4f} ± {differences.std(ddof=1):.4f}"
    lines = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert expected in lines["| mwat"]
    assert "| +0.1500 |" in lines["| trades"]  # one shared seed: no spread printed
    assert "| – |" in lines["| pgd_at"]
    # Another reference, and none when it was not compared.
    assert "Δ worst case vs mwat (paired)" in summarize(rows, reference="mwat")
    assert "Δ" not in summarize([r for r in rows if r["method"] != "pgd_at"])


def test_best_versus_last_reads_each_run_and_counts_the_last_epoch_wins():
    from keras_mwat.experiments.summary import best_versus_last

    def row(method, seed, validation, best_epoch, best_clean, best_robust):
        return {"method": method, "seed": seed, "clean": 0.96, "APGD-CE": 0.70,
                "worst_case": 0.65, "history": {"robust_val_accuracy": validation},
                "robustness": {"attacks": [{"name": "APGD-CE"}, {"name": "APGD-T"}]},
                "best": {"epoch": best_epoch, "val_robust": validation[best_epoch],
                         "clean": best_clean, "worst_case": best_robust, "attacks": "quick"}}

    rows = [row("mwat", 0, [0.5, 0.7, 0.6], 1, 0.95, 0.68),
            row("pgd_at", 0, [0.5, 0.6, 0.7], 2, 0.96, 0.69),
            {"method": "trades", "seed": 0}]  # no best checkpoint: left out
    lines = best_versus_last(rows).splitlines()
    assert "last (APGD-CE)" in lines[0]
    assert lines[2] == ("| mwat | 0 | 2 of 3 | 0.700 / 0.600 | 0.950 / 0.960 | "
                        "0.680 (quick) / 0.700 |")
    assert lines[3].startswith("| pgd_at | 0 | 3 of 3 | 0.700 / 0.700 |")
    assert lines[-1] == "The best validation epoch is the last one in 1 of 2 runs."
    assert best_versus_last([{"method": "trades", "seed": 0}]) == ""


def test_compare_rejects_unknown_methods():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--methods", "pgd_at,fgsm_at"])


def test_method_specs_parse_constructor_arguments():
    import pytest

    import keras_mwat as km
    from keras_mwat.cli import parse_method_spec

    assert parse_method_spec("mwat") == ("mwat", {})
    # MWAT's grouped options, spelled flat, are folded into km.MetaSet / km.LookAhead.
    name, overrides = parse_method_spec("mwat:meta_objective=clean:reweight_start_epoch=3")
    assert name == "mwat" and overrides["reweight_start_epoch"] == 3
    assert overrides["meta_set"].get_config() == km.MetaSet(objective="clean").get_config()
    assert overrides["look_ahead"].get_config() == km.LookAhead().get_config()
    name, overrides = parse_method_spec("mwn:meta_batch_size=64:inner_lr=0.05")
    assert (overrides["meta_set"].objective, overrides["meta_set"].batch_size) == ("clean", 64)
    assert overrides["look_ahead"].step_size == 0.05  # MWN's clean meta loss is kept
    with pytest.raises(ValueError, match="unknown method 'mwatt'"):
        parse_method_spec("mwatt:margin=scalar")
    with pytest.raises(ValueError, match="takes no argument 'margins'"):
        parse_method_spec("mwat:margins=scalar")
    with pytest.raises(ValueError, match="expected key=value"):
        parse_method_spec("mwat:scalar")
    with pytest.raises(ValueError, match="takes no argument 'meta_data'"):
        parse_method_spec("mwat:meta_data=x")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--methods", "pgd_at,mwat:meta_objective"])


def test_compare_rejects_a_bad_variant_value_before_training(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="margin.*scalarr"):
        main(["compare", "--methods", "pgd_at,mwat:margin=scalarr", "--epochs", "1",
              "--subset", "64", "--verbose", "0", "--resume", str(tmp_path)])
    assert not (tmp_path / "pgd_at").exists()


@pytest.mark.integration
def test_compare_runs_ablation_variants(tmp_path):
    variants = ["mwat:meta_objective=adversarial:margin=scalar",
                "mwat:meta_source=dataset:meta_batch_size=16"]
    main(["compare", "--methods", ",".join(variants), "--epochs", "1", "--subset", "64",
          "--test-subset", "32", "--train-steps", "1", "--eval-attacks", "pgd",
          "--eval-steps", "2", "--eval-restarts", "1", "--best-eval", "none",
          "--eps-warmup-epochs", "0", "--verbose", "0", "--resume", str(tmp_path)])
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [row["method"] for row in report["rows"]] == variants
    # Each row records the options the run had (whatever the defaults become later).
    assert report["rows"][0]["config"]["meta_objective"] == "adversarial"
    assert report["rows"][0]["config"]["margin"] == "scalar"
    assert report["rows"][1]["config"]["meta_batch_size"] == 16
    first = keras.models.load_model(
        tmp_path / "mwat+meta_objective=adversarial+margin=scalar" / "seed0" / "model.keras")
    assert (first.meta_objective, first.margin) == ("adversarial", "scalar")
    # A loaded model falls back to the batch (its meta data is not saved); the batch size
    # shows that the variant reached the constructor.
    second = keras.models.load_model(
        tmp_path / "mwat+meta_source=dataset+meta_batch_size=16" / "seed0" / "model.keras")
    assert second.meta_batch_size == 16
    assert f"| {variants[0]} | 0 |" in (tmp_path / "compare.md").read_text()


@pytest.mark.integration
def test_tune_runs_trials_with_scores(tmp_path, capsys):
    main(["tune", "--max-trials", "2", "--epochs", "1", "--subset", "96", "--train-steps",
          "1", "--batch-size", "32", "--directory", str(tmp_path)])
    out = capsys.readouterr().out
    assert "best val_robust_accuracy" in out


def test_train_on_a_prepared_tfds_dataset(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(80, 16, 16, 3), dtype=np.uint8)
    y = np.arange(80, dtype=np.int64) % 3
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(16, 16, 3)),
        "label": tfds.features.ClassLabel(num_classes=3)})
    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_rgb", version="1.0.0", features=features, data_dir=tmp_path / "tfds",
        split_datasets={
            "train": tf.data.Dataset.from_tensor_slices({"image": x[:60], "label": y[:60]}),
            "test": tf.data.Dataset.from_tensor_slices({"image": x[60:], "label": y[60:]})})
    metrics_ = main(["train", "--dataset", "tfds:tiny_rgb", "--data-dir", str(tmp_path / "tfds"),
                     "--epochs", "1", "--batch-size", "16", "--train-steps", "1",
                     "--eval-attacks", "pgd", "--eval-steps", "2", "--eval-restarts", "1",
                     "--eps-warmup-epochs", "0",
                     "--out", str(tmp_path / "runs"), "--verbose", "0"])
    assert metrics_ == 0
    (run,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 20
    # MWAT's held-out meta set (a fifth of the 54 training examples) is not trained on.
    assert metrics["meta_samples"] == 10 and metrics["train_samples"] == 44
    model = keras.models.load_model(run / "model.keras")
    assert model.classifier.input_shape == (None, 16, 16, 3)
    assert model.classifier.output_shape == (None, 3)
