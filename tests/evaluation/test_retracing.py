"""Attacks trace their graph once per model, whatever the batch sizes they are called with.

Evaluation calls each attack on batches of ``batch_size`` points and a smaller last batch,
and the cascade hands every attack a different number of points. A retrace per batch size
costs seconds per attack (APGD's graph is large) and made TensorFlow warn about
"frequent retracing". The counter below runs only while ``perturb`` is traced (a Python
side effect), so it counts traces, not calls.
"""

import logging

import keras
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.attacks import APGD, PGD


class CountingPGD(PGD):
    """PGD that counts how often its ``perturb`` is traced."""

    traces = 0

    def perturb(self, *args, **kwargs):
        type(self).traces += 1
        return super().perturb(*args, **kwargs)


class CountingAPGD(APGD):
    """APGD that counts how often its ``perturb`` is traced."""

    traces = 0

    def perturb(self, *args, **kwargs):
        type(self).traces += 1
        return super().perturb(*args, **kwargs)


@pytest.fixture()
def model_and_points():
    """An untrained CNN and 70 points labelled with its own predictions (all correct)."""
    model = km.zoo.tiny_cnn(input_shape=(28, 28, 1), num_classes=10)
    x = km.data.load_embedded().x_test[:70]
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    return model, x, y


def test_evaluation_traces_each_attack_once_with_a_smaller_last_batch(model_and_points, caplog):
    model, x, y = model_and_points
    CountingPGD.traces = CountingAPGD.traces = 0
    # A tiny radius fools few points: each attack runs on 32 + 32 + (about) 6 points.
    suite = [CountingPGD(eps=1e-4, step_size=1e-4, num_steps=2, seed=0),
             CountingAPGD(eps=1e-4, num_steps=3, seed=0)]
    with caplog.at_level(logging.WARNING):
        report = km.evaluate_robustness(model, (x, y), eps=1e-4, attacks=suite, batch_size=32,
                                        checks=False, verbose=0, seed=0)
    assert report.clean_accuracy == 1.0
    assert [entry["attacked"] for entry in report.attacks][0] == 70  # three batches
    assert report.attacks[1]["attacked"] > 64  # APGD also gets a smaller last batch
    assert CountingPGD.traces == 1
    assert CountingAPGD.traces == 1
    assert "retracing" not in caplog.text


def test_standalone_call_traces_once_for_every_batch_size(model_and_points):
    model, x, y = model_and_points
    CountingPGD.traces = 0
    attack = CountingPGD(eps=0.01, step_size=0.005, num_steps=2, seed=0)
    for n, batch_size in [(70, 32), (50, 16), (7, None), (70, 70)]:
        x_adv = attack(model, x[:n], y[:n], batch_size=batch_size)
        assert x_adv.shape == x[:n].shape
    assert CountingPGD.traces == 1
    # A new model, or a new configuration, is a new graph.
    attack(keras.models.clone_model(model), x[:5], y[:5])
    assert CountingPGD.traces == 2


def test_masking_checks_of_many_models_do_not_warn_about_retracing(caplog):
    """The gradient-masking check runs eagerly: evaluating six models in one process (as
    ``keras-mwat compare`` does) traces nothing per model."""
    x = km.data.load_embedded().x_test[:16]
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for seed in range(6):
            keras.utils.set_random_seed(seed)
            model = km.zoo.mlp(input_shape=(28, 28, 1), num_classes=10, hidden_units=(8,))
            y = np.argmax(model.predict(x, verbose=0), axis=1)
            km.evaluation.masking.input_gradient_norms(model, x, y)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_compare_drops_only_the_new_model_trace_warning():
    from keras_mwat.experiments.runs import _NewModelTraceFilter

    def record(message):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)

    keras_fn = ("5 out of the last 5 calls to <function TensorFlowTrainer._make_function."
                "<locals>.multi_step_on_iterator at 0x1> triggered tf.function retracing.")
    ours = ("5 out of the last 5 calls to <function Attack._function_for.<locals>.run at 0x2>"
            " triggered tf.function retracing.")
    assert not _NewModelTraceFilter().filter(record(keras_fn))
    assert _NewModelTraceFilter().filter(record(ours))
    assert _NewModelTraceFilter().filter(record("something else"))
