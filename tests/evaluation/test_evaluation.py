"""Tests of ``evaluate_robustness``: the cascade, masking checks, reports and validation."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat.attacks import APGD, FGSM, PGD
from keras_mwat.evaluation import GradientMaskingWarning, preset_attacks
from keras_mwat.evaluation.presets import attack_name

EPS = 0.1


def small_suite(seed=0):
    return [
        FGSM(eps=EPS),
        PGD(eps=EPS, step_size=EPS / 4, num_steps=10, seed=seed),
        APGD(eps=EPS, num_steps=20, seed=seed),
    ]


def masking_warnings(record):
    return [w for w in record if issubclass(w.category, GradientMaskingWarning)]


class Quantised(keras.Model):
    """A deliberately masked model: inputs are quantised and the gradient is cut."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x, training=False):
        return self.inner(tf.stop_gradient(tf.round(x * 4.0) / 4.0), training=training)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(tf.constant(x), training=False).numpy(), 1) == y))


# ---------------------------------------------------------------------------- cascade


def test_cascade_worst_case_is_below_every_single_attack(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = x[:150], y[:150]
    alone = km.evaluate_robustness(model, (x, y), eps=EPS, attacks=small_suite(), cascade=False,
                                   checks=False, verbose=0)
    singles = [entry["robust_accuracy"] for entry in alone.attacks]
    assert alone.robust_accuracy <= min(singles)
    assert 0.1 < alone.robust_accuracy < alone.clean_accuracy  # attacks matter here
    # Each single number is that attack's own robust accuracy, checked independently.
    for attack, value in zip(small_suite(), singles):
        assert value == pytest.approx(accuracy(model, attack(model, x, y).numpy(), y), abs=0.02)

    cascade, x_worst = km.evaluate_robustness(
        model, (x, y), eps=EPS, attacks=small_suite(), checks=False, verbose=0,
        return_adversarial=True)
    after = [entry["robust_accuracy_after"] for entry in cascade.attacks]
    assert after == sorted(after, reverse=True)  # never rises: no point flips back
    assert cascade.robust_accuracy == after[-1] <= min(singles) + 0.02
    # The worst-case inputs are what the report says: fooled points stay fooled.
    predicted = np.argmax(model(tf.constant(x_worst), training=False).numpy(), 1)
    assert np.mean(predicted == y) == pytest.approx(cascade.robust_accuracy)
    assert np.abs(x_worst - x).max() <= EPS + 1e-6
    # Later attacks ran only on the points earlier ones left.
    attacked = [entry["attacked"] for entry in cascade.attacks]
    assert attacked[0] == round(cascade.clean_accuracy * len(x))
    for previous, entry in zip(cascade.attacks, cascade.attacks[1:]):
        assert entry["attacked"] == round(previous["robust_accuracy_after"] * len(x))


def test_dataset_input_matches_arrays_and_training_models_are_unwrapped(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = x[:64], y[:64]
    suite = [PGD(eps=EPS, step_size=EPS / 4, num_steps=5, seed=0)]
    arrays = km.evaluate_robustness(model, (x, y), eps=EPS, attacks=suite, checks=False,
                                    verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    wrapped = km.PGDATModel(model, attack=suite[0])
    from_dataset = km.evaluate_robustness(wrapped, dataset, eps=EPS, attacks=suite, n=64,
                                          checks=False, verbose=0)
    assert from_dataset.n == 64
    assert from_dataset.clean_accuracy == arrays.clean_accuracy
    assert from_dataset.robust_accuracy == arrays.robust_accuracy


# --------------------------------------------------------------------- masking checks


def test_masking_warnings_fire_on_a_masked_model(clean_cnn):
    model, (x, y) = clean_cnn
    masked = Quantised(model)
    masked(tf.constant(x[:2]))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = km.evaluate_robustness(masked, (x[:120], y[:120]), eps=EPS, attacks="quick",
                                        check_points=100, verbose=0)
    fired = masking_warnings(record)
    assert fired and len(report.warnings) == len(fired)
    assert any("gradients" in str(w.message) for w in fired)
    assert report.checks["zero_or_nonfinite_gradients"] == 1.0


def test_no_masking_warning_on_a_normally_trained_model(clean_cnn):
    model, (x, y) = clean_cnn
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = km.evaluate_robustness(model, (x[:120], y[:120]), eps=EPS, attacks="quick",
                                        check_points=100, verbose=0)
    assert not masking_warnings(record) and report.warnings == []
    checks = report.checks
    assert checks["zero_or_nonfinite_gradients"] == 0.0
    assert checks["fgsm"] >= checks["pgd10"] >= checks["pgd100"] - 0.02
    assert checks["large_eps"] <= 0.1


def test_probability_outputs_raise(clean_cnn):
    model, (x, y) = clean_cnn
    softmax = keras.Sequential([model, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="probabilities.*Remove the final softmax"):
        km.evaluate_robustness(softmax, (x[:40], y[:40]), eps=EPS,
                               attacks=[FGSM(eps=EPS)], check_points=20, verbose=0)


def test_black_box_check_counts_points_after_white_box_attacks():
    from keras_mwat.evaluation.masking import check_black_box

    white = {"class_name": "APGD", "fooled": 10, "robust_accuracy": None}
    square = {"class_name": "Square", "fooled": 5, "robust_accuracy": None}
    assert "Square" in check_black_box([white, square], n=500)
    assert check_black_box([white, dict(square, fooled=1)], n=500) is None
    assert check_black_box([square, white], n=500) is None  # nothing ran before it


# ---------------------------------------------------------------------------- reports


def test_report_json_round_trip_and_table(clean_cnn, tmp_path):
    model, (x, y) = clean_cnn
    report = km.evaluate_robustness(model, (x[:50], y[:50]), eps=EPS, attacks=small_suite(),
                                    seed=3, check_points=20, verbose=0)
    restored = km.RobustnessReport.from_json(report.to_json())
    assert restored == report
    report.save(tmp_path / "r.json")
    assert km.RobustnessReport.load(tmp_path / "r.json") == report
    data = json.loads(report.to_json())
    assert data["eps"] == EPS and data["norm"] == "linf" and data["n"] == 50
    assert data["seed"] == 3 and data["versions"]["tensorflow"] == tf.__version__
    assert data["attacks"][1]["config"]["num_steps"] == 10
    assert data["duration_seconds"] > 0
    table = str(report)
    for name in ("FGSM", "PGD-10", "APGD-CE", "worst case", "eps=0.1", "n=50"):
        assert name in table
    assert list(report.per_attack) == ["FGSM", "PGD-10", "APGD-CE"]
    with pytest.raises(ValueError, match="not a RobustnessReport"):
        km.RobustnessReport.from_json(json.dumps({"clean_accuracy": 1.0, "bogus": 2}))


# ------------------------------------------------------------------ presets, validation


def test_presets():
    names = [attack_name(a) for a in preset_attacks("standard", eps=0.3)]
    assert names == ["APGD-CE", "APGD-T", "CW-PGD", "Square"]
    apgd_t = preset_attacks("standard", eps=0.3)[1]
    assert apgd_t.targeted and apgd_t.num_target_classes == 9 and apgd_t.loss == "dlr"
    three = [attack_name(a) for a in preset_attacks("standard", eps=0.3, num_classes=3)]
    assert three == ["APGD-CE", "APGD-T-CE", "CW-PGD", "Square"]
    two = [attack_name(a) for a in preset_attacks("standard", eps=0.3, num_classes=2)]
    assert two == ["APGD-CE", "CW-PGD", "Square"]
    quick = preset_attacks("quick", eps=0.3, seed=5)
    assert [attack_name(a) for a in quick] == ["PGD-20x2", "APGD-CE"]
    assert len({a.seed for a in quick}) == 2  # each attack its own seed


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": -0.1}, "eps"),
        ({"attacks": "strong"}, "attacks"),
        ({"attacks": [PGD(eps=0.2)]}, "eps"),
        ({"norm": "l1"}, "norm"),
        ({"n": 0}, "n"),
    ],
)
def test_bad_arguments_are_named(clean_cnn, kwargs, match):
    model, (x, y) = clean_cnn
    arguments = {"eps": EPS, "verbose": 0, "checks": False, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        km.evaluate_robustness(model, (x[:8], y[:8]), **arguments)


def test_bad_data_is_named(clean_cnn):
    model, (x, y) = clean_cnn
    with pytest.raises(ValueError, match="value_range"):
        km.evaluate_robustness(model, (x[:8] * 255, y[:8]), eps=EPS, verbose=0)
    with pytest.raises(ValueError, match="label 10"):
        km.evaluate_robustness(model, (x[:8], np.full(8, 10)), eps=EPS, verbose=0)
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        km.evaluate_robustness(model, (x[:4], y[:3]), eps=EPS, verbose=0)
