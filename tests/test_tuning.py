"""Tests of the Keras Tuner support (keras_mwat.tuning)."""

from __future__ import annotations

import math

import keras
import keras_tuner
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat import tuning

EPS = 0.1
FAST = {"attack_steps": 1, "classifier_width": 4}
TRAIN, META = 96, 16


def _hypermodel(**kwargs) -> tuning.MWATHyperModel:
    options = {"input_shape": (28, 28, 1), "num_classes": 10, "eps": EPS, "seed": 0, **FAST}
    options.update(kwargs)
    return tuning.MWATHyperModel(**options)


class RecordingHyperModel(tuning.MWATHyperModel):
    """Records what every trial's ``fit`` trains on and the meta set its model has."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def fit(self, hp, model, *args, **kwargs):
        self.seen.append({"x": np.asarray(args[0]), "meta": self.meta_data,
                          "has_meta_set": model.has_meta_set})
        return super().fit(hp, model, *args, **kwargs)


def _rows(x) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(x, dtype="float32")}


@pytest.fixture(scope="module")
def tiny_data():
    return km.data.load_embedded().subset(train=TRAIN, validation=32, test=32, seed=0)


@pytest.fixture(scope="module")
def searched(tiny_data, tmp_path_factory):
    """A finished 2-trial random search on a tiny subset of the embedded data."""
    directory = tmp_path_factory.mktemp("tuning")
    hypermodel = RecordingHyperModel((28, 28, 1), 10, eps=EPS, seed=0, **FAST)
    tuner = tuning.tune(tiny_data, max_trials=2, epochs=1, directory=directory, seed=0,
                        batch_size=32, hypermodel=hypermodel, meta_size=META)
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


def test_trials_train_on_the_rest_and_learn_on_a_disjoint_meta_set(searched, tiny_data):
    tuner, _ = searched
    seen = tuner.hypermodel.seen
    assert len(seen) == 2
    everything = _rows(tiny_data.x_train)
    assert len(everything) == TRAIN  # no duplicate digits, so rows identify samples
    for trial in seen:
        trained, meta = _rows(trial["x"]), _rows(trial["meta"][0])
        assert trial["has_meta_set"]
        assert len(trained) == TRAIN - META and len(meta) == META
        assert not trained & meta and trained | meta == everything
    assert _rows(seen[0]["meta"][0]) == _rows(seen[1]["meta"][0])  # one meta set for all
    # Stratified: 16 of 96 balanced digits hold every class at most twice.
    assert np.bincount(seen[0]["meta"][1], minlength=10).max() <= 2


def test_best_model_and_hyperparameters_can_be_retrieved(searched):
    tuner, _ = searched
    best_hp = tuner.get_best_hyperparameters(1)[0]
    assert set(best_hp.values) == {"learning_rate", "meta_learning_rate", "weight_net_units"}
    best_trial = tuner.oracle.get_best_trials(1)[0]
    assert best_trial.score == max(t.score for t in tuner.oracle.trials.values())
    model = tuner.get_best_models(1)[0]
    assert isinstance(model, km.MWATModel)
    assert model.has_meta_set  # rebuilt with the meta set: it can train further
    assert model.attack.eps == pytest.approx(EPS)
    data = km.data.load_embedded().subset(train=8, validation=8, test=8, seed=0)
    logits = np.asarray(model(data.x_test))
    assert logits.shape == (8, 10) and np.isfinite(logits).all()


def test_build_is_seeded():
    hypermodel = _hypermodel()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)  # registers the defaults
    hp.values.update(weight_net_units=64, meta_learning_rate=1.0, learning_rate=0.05)
    keras.utils.set_random_seed(123)
    first = hypermodel.build(hp)
    keras.utils.set_random_seed(456)
    second = hypermodel.build(hp)
    for a, b in ((first.classifier, second.classifier), (first.weight_net, second.weight_net)):
        wa, wb = a.get_weights(), b.get_weights()
        assert len(wa) == len(wb) > 0
        for x, y in zip(wa, wb):
            np.testing.assert_array_equal(x, y)
    assert first.weight_net.hidden_units == (64,)
    other = _hypermodel(seed=1).build(hp)
    assert not np.array_equal(first.classifier.get_weights()[0],
                              other.classifier.get_weights()[0])


def test_search_space_names_and_ranges():
    hp = keras_tuner.HyperParameters()
    _hypermodel().build(hp)
    space = {p.name: p for p in hp.space}
    assert set(space) == {"learning_rate", "meta_learning_rate", "weight_net_units"}
    lr = space["learning_rate"]
    assert isinstance(lr, keras_tuner.engine.hyperparameters.Float)
    assert (lr.min_value, lr.max_value, lr.sampling, lr.default) == (0.01, 0.3, "log", 0.1)
    alpha = space["meta_learning_rate"]
    assert isinstance(alpha, keras_tuner.engine.hyperparameters.Float)
    assert (alpha.min_value, alpha.max_value, alpha.sampling) == (0.03, 3.0, "log")
    assert alpha.min_value < alpha.default < alpha.max_value
    units = space["weight_net_units"]
    assert list(units.values) == [64, 128, 256] and units.default == 128  # the paper's 128


def test_default_hyperparameters_build_the_papers_bilaw():
    meta = (np.zeros((4, 28, 28, 1), "float32"), np.arange(4))
    model = _hypermodel(meta_data=meta).build(keras_tuner.HyperParameters())
    reference = km.MWATModel(km.zoo.small_cnn(width=4), meta_data=meta)
    for key in ("margin", "meta_source", "meta_objective", "weight_normalization",
                "margin_source", "inner_lr", "reweight_start_epoch", "meta_update_every"):
        assert getattr(model, key) == getattr(reference, key), key
    assert model.weight_net.hidden_units == (128,)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
    assert model.optimizer.momentum == pytest.approx(0.9)
    assert model.has_meta_set


def test_hyperparameters_reach_the_model():
    hypermodel = _hypermodel()
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(learning_rate=0.02, meta_learning_rate=2.5, weight_net_units=256)
    model = hypermodel.build(hp)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)
    assert model.optimizer.momentum == pytest.approx(0.9)
    assert model.inner_lr is None  # the pseudo step takes the optimizer's learning rate
    # α: a plain gradient step on the weight network.
    assert type(model.meta_optimizer) is keras.optimizers.SGD
    assert float(model.meta_optimizer.learning_rate) == pytest.approx(2.5)
    assert model.meta_optimizer.momentum == 0.0
    assert model.weight_net.hidden_units == (256,)
    assert model.built  # Keras Tuner checkpoints need a built wrapper


def test_meta_data_reaches_every_model_and_without_it_fit_refuses(tiny_data):
    meta = (tiny_data.x_train[:8], tiny_data.y_train[:8])
    with_meta = _hypermodel(meta_data=meta).build(keras_tuner.HyperParameters())
    assert with_meta.has_meta_set
    copy = _hypermodel().with_meta_data(meta)
    assert copy.build(keras_tuner.HyperParameters()).has_meta_set
    without = _hypermodel().build(keras_tuner.HyperParameters())
    assert not without.has_meta_set
    with pytest.raises(ValueError, match="held-out meta set"):
        without.fit(tiny_data.x_train[:8], tiny_data.y_train[:8], epochs=1, verbose=0)


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
        ({"meta_data": np.zeros((4, 2))}, TypeError),
        ({"meta_data": (np.zeros((4, 2)), np.zeros(3))}, ValueError),
        ({"meta_data": (np.zeros((0, 2)), np.zeros(0))}, ValueError),
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
    with pytest.raises(ValueError, match="meta_size"):
        tuning.tune(data, directory=tmp_path, meta_size=8)  # all 8 training samples
    with pytest.raises(ValueError, match="meta_size"):
        tuning.tune(data, directory=tmp_path, meta_size=0)
    tiny = km.data.load_embedded().subset(train=6, validation=8, test=8, seed=0)
    with pytest.raises(ValueError, match="too few"):
        tuning.tune(tiny, directory=tmp_path)


def test_default_meta_size():
    assert tuning.default_meta_size(3500) == 500  # the embedded training split
    assert tuning.default_meta_size(60000) == 1000  # the paper's, of MNIST
    assert tuning.default_meta_size(6) == 0


@pytest.fixture
def recorded_search(monkeypatch):
    """``tune`` with ``RandomSearch.search`` replaced by a recorder (no training)."""
    calls = []
    monkeypatch.setattr(keras_tuner.RandomSearch, "search",
                        lambda self, *args, **kwargs: calls.append((self, args, kwargs)))
    return calls


def test_tune_splits_the_default_meta_set_off_the_training_data(recorded_search, tmp_path):
    data = km.data.load_embedded().subset(train=700, validation=8, test=8, seed=0)
    tuner = tuning.tune(data, directory=tmp_path, seed=3)
    (_, (x, y), kwargs), = recorded_search
    meta = tuner.hypermodel.meta_data
    assert len(meta[1]) == 100 and len(y) == 600  # a seventh, 10 per class
    assert np.bincount(meta[1]).tolist() == [10] * 10
    assert not _rows(x) & _rows(meta[0]) and _rows(x) | _rows(meta[0]) == _rows(data.x_train)
    assert len(kwargs["validation_data"][1]) == 8
    again = tuning.tune(data, directory=tmp_path, seed=3).hypermodel.meta_data
    np.testing.assert_array_equal(again[0], meta[0])  # seeded


def test_tune_uses_a_given_meta_set_as_it_is(recorded_search, tmp_path):
    data = km.data.load_embedded().subset(train=200, validation=8, test=8, seed=0)
    held_out = data.with_holdout(meta=20, early_stopping=0, seed=0)
    tuner = tuning.tune(held_out, directory=tmp_path, meta_size=50)
    (_, (x, _), _), = recorded_search
    np.testing.assert_array_equal(tuner.hypermodel.meta_data[0], held_out.x_meta)
    np.testing.assert_array_equal(x, held_out.x_train)  # 180: nothing more held out
    meta = (data.x_train[:5], data.y_train[:5])
    mine = _hypermodel(meta_data=meta)
    tuner = tuning.tune(data, directory=tmp_path, hypermodel=mine)
    assert tuner.hypermodel is mine and len(recorded_search[1][1][1]) == 200


class FailingHyperModel(tuning.MWATHyperModel):
    def fit(self, hp, model, *args, **kwargs):
        raise ValueError("this trial fails on purpose")


def test_tune_raises_when_every_trial_fails(tiny_data, tmp_path):
    failing = FailingHyperModel((28, 28, 1), 10, eps=EPS, **FAST)
    with pytest.raises(RuntimeError, match="(?s)Every trial.*fails on purpose"):
        tuning.tune(tiny_data, max_trials=1, directory=tmp_path, hypermodel=failing,
                    meta_size=META)
