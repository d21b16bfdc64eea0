"""Tests of the Keras Tuner support (keras_mwat.tuning)."""

from __future__ import annotations

import math

import keras
import keras_tuner
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat import tuning

EPS = 0.3
FAST = {"attack_steps": 1, "classifier_width": 4}


def _hypermodel(**kwargs) -> tuning.MWATHyperModel:
    options = {"input_shape": (28, 28, 1), "num_classes": 10, "eps": EPS, "seed": 0, **FAST}
    options.update(kwargs)
    return tuning.MWATHyperModel(**options)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 2-trial random search on a tiny subset of the embedded data."""
    data = km.data.load_embedded().subset(train=96, validation=32, test=32, seed=0)
    directory = tmp_path_factory.mktemp("tuning")
    tuner = tuning.tune(data, max_trials=2, epochs=1, directory=directory, seed=0,
                        batch_size=32, eps=EPS, **FAST)
    return tuner, directory


def test_objective_is_val_robust_accuracy_maximised():
    for obj in (tuning.objective(), tuning.MWATHyperModel.OBJECTIVE):
        assert isinstance(obj, keras_tuner.Objective)
        assert obj.name == "val_robust_accuracy"
        assert obj.direction == "max"


def test_every_trial_completes_with_a_finite_score(searched):
    tuner, directory = searched
    trials = tuner.oracle.trials
    assert len(trials) == 2
    for trial in trials.values():
        assert trial.status == "COMPLETED", trial.status
        assert trial.score is not None
        assert math.isfinite(trial.score) and 0.0 <= trial.score <= 1.0
        # The score is the metric the objective names, not a fallback (e.g. val_loss).
        history = trial.metrics.get_history("val_robust_accuracy")
        assert history and math.isclose(history[-1].value[0], trial.score)
    assert tuner.oracle.objective.name == "val_robust_accuracy"
    assert str(tuner.project_dir).startswith(str(directory))


def test_best_model_and_hyperparameters_can_be_retrieved(searched):
    tuner, _ = searched
    best_hp = tuner.get_best_hyperparameters(1)[0]
    assert set(best_hp.values) >= {"learning_rate", "weight_net_units", "meta_objective"}
    best_trial = tuner.oracle.get_best_trials(1)[0]
    assert best_trial.score == max(t.score for t in tuner.oracle.trials.values())
    model = tuner.get_best_models(1)[0]
    assert isinstance(model, km.MWATModel)
    assert model.attack.eps == pytest.approx(EPS)
    data = km.data.load_embedded().subset(train=8, validation=8, test=8, seed=0)
    logits = np.asarray(model(data.x_test))
    assert logits.shape == (8, 10) and np.isfinite(logits).all()


def test_build_is_seeded():
    hypermodel = _hypermodel()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)  # registers the defaults
    hp.values.update(weight_net_units=32, meta_objective="adversarial", learning_rate=5e-4)
    keras.utils.set_random_seed(123)
    first = hypermodel.build(hp)
    keras.utils.set_random_seed(456)
    second = hypermodel.build(hp)
    for a, b in ((first.classifier, second.classifier), (first.weight_net, second.weight_net)):
        wa, wb = a.get_weights(), b.get_weights()
        assert len(wa) == len(wb) > 0
        for x, y in zip(wa, wb):
            np.testing.assert_array_equal(x, y)
    assert first.weight_net.hidden_units == (32,)
    other = _hypermodel(seed=1).build(hp)
    assert not np.array_equal(first.classifier.get_weights()[0],
                              other.classifier.get_weights()[0])


def test_search_space_names_and_ranges():
    hp = keras_tuner.HyperParameters()
    _hypermodel().build(hp)
    space = {p.name: p for p in hp.space}
    assert set(space) == {
        "learning_rate", "separate_inner_lr", "inner_lr", "weight_net_units",
        "meta_learning_rate", "meta_objective", "reweight_start_epoch",
    }
    lr = space["learning_rate"]
    assert isinstance(lr, keras_tuner.engine.hyperparameters.Float)
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 3e-3, "log")
    inner = space["inner_lr"]
    assert (inner.min_value, inner.max_value, inner.sampling) == (1e-3, 1e-1, "log")
    assert [c.name for c in inner.conditions] == ["separate_inner_lr"]
    assert isinstance(space["separate_inner_lr"], keras_tuner.engine.hyperparameters.Boolean)
    assert list(space["weight_net_units"].values) == [32, 100, 200]
    meta = space["meta_learning_rate"]
    assert (meta.min_value, meta.max_value, meta.sampling) == (1e-4, 1e-2, "log")
    assert list(space["meta_objective"].values) == ["adversarial", "clean", "both"]
    start = space["reweight_start_epoch"]
    assert isinstance(start, keras_tuner.engine.hyperparameters.Int)
    assert (start.min_value, start.max_value) == (0, 2)


def test_hyperparameters_reach_the_model():
    hypermodel = _hypermodel()
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.inner_lr is None  # default: the optimizer's learning rate
    assert model.meta_objective == "adversarial" and model.reweight_start_epoch == 0
    hp.values.update(separate_inner_lr=True, inner_lr=0.05, meta_objective="clean",
                     reweight_start_epoch=2, learning_rate=2e-3, meta_learning_rate=3e-3)
    model = hypermodel.build(hp)
    assert model.inner_lr == pytest.approx(0.05)
    assert model.meta_objective == "clean" and model.reweight_start_epoch == 2
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    assert isinstance(model.meta_optimizer, keras.optimizers.Adam)
    assert float(model.meta_optimizer.learning_rate) == pytest.approx(3e-3)
    assert model.built  # Keras Tuner checkpoints need a built wrapper


def test_attack_uses_the_given_threat_model():
    model = _hypermodel(attack_steps=4, value_range=(-1.0, 1.0), norm="l2").build(
        keras_tuner.HyperParameters())
    attack = model.attack
    assert isinstance(attack, km.attacks.PGD)
    assert attack.eps == pytest.approx(EPS)
    assert attack.num_steps == 4
    assert attack.step_size == pytest.approx(2.5 * EPS / 4)
    assert attack.norm == "l2" and attack.value_range == (-1.0, 1.0)
    explicit = _hypermodel(step_size=0.01).build(keras_tuner.HyperParameters())
    assert explicit.attack.step_size == pytest.approx(0.01)


@pytest.mark.parametrize(
    "input_shape, convolutional",
    [((28, 28, 1), True), ((8, 8, 1), True), ((4, 4, 1), False), ((8, 8), False), ((20,), False)],
)
def test_classifier_suits_the_input(input_shape, convolutional):
    model = _hypermodel(input_shape=input_shape, num_classes=3, value_range=None).build(
        keras_tuner.HyperParameters())
    names = [layer.name for layer in model.classifier.layers]
    assert ("conv1" in names) is convolutional
    assert model.classifier.output_shape == (None, 3)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"eps": 0.0}, ValueError),
        ({"eps": "0.3"}, TypeError),
        ({"num_classes": 1}, ValueError),
        ({"input_shape": (28, 0, 1)}, ValueError),
        ({"input_shape": "28x28"}, TypeError),
        ({"attack_steps": 0}, ValueError),
        ({"step_size": -0.1}, ValueError),
        ({"norm": "l1"}, ValueError),
        ({"value_range": (1.0, 0.0)}, ValueError),
        ({"seed": -1}, ValueError),
        ({"classifier_width": 0}, ValueError),
        ({"name": ""}, ValueError),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error):
    with pytest.raises(error):
        _hypermodel(**kwargs)


def test_tune_rejects_bad_data_and_hypermodel(tmp_path):
    with pytest.raises(TypeError, match="x_train"):
        tuning.tune((np.zeros((4, 2)), np.zeros(4)), directory=tmp_path)
    data = km.data.load_embedded().subset(train=8, validation=8, test=8, seed=0)
    with pytest.raises(TypeError, match="hypermodel"):
        tuning.tune(data, directory=tmp_path, hypermodel=object())
    with pytest.raises(ValueError, match="max_trials"):
        tuning.tune(data, max_trials=0, directory=tmp_path)
