"""Every attack, and ``evaluate_robustness``, refuses a classifier that outputs probabilities.

The losses the attacks maximise take logits; on a softmax output they saturate, so an
attack "fails" silently and the model looks robust. The training models already refuse
such a classifier (``validation.check_logits``); the standalone entry points must too.
"""

import inspect
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat import attacks
from keras_mwat.attacks import Attack

EPS = 0.1
SHAPE = (8, 8, 1)
NUM_CLASSES = 3

#: Small budgets for whichever of these arguments an attack takes.
SMALL_BUDGET = {
    "step_size": EPS / 2,
    "num_steps": 3,
    "num_queries": 4,
    "num_restarts": 1,
    "num_target_classes": 1,
}

EXPORTED = sorted(
    (
        obj
        for name in attacks.__all__
        if isinstance(obj := getattr(attacks, name), type)
        and issubclass(obj, Attack)
        and obj is not Attack
    ),
    key=lambda cls: cls.__name__,
)


def make_attack(cls) -> Attack:
    """An instance of ``cls`` at eps=EPS with a small budget."""
    parameters = inspect.signature(cls.__init__).parameters
    kwargs = {"eps": EPS, "seed": 0}
    kwargs.update({k: v for k, v in SMALL_BUDGET.items() if k in parameters})
    if cls.__name__ == "CleverhansAttack":
        pytest.importorskip("cleverhans.tf2.attacks")
        return cls("fast_gradient_method", **kwargs)
    return cls(**{k: v for k, v in kwargs.items() if k in parameters})


def cnn(activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(NUM_CLASSES, activation=activation),
        ]
    )


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n, *SHAPE)).astype("float32")
    return x, rng.integers(0, NUM_CLASSES, size=n)


def probability_models():
    """Three ways a classifier ends in a softmax: activation, layer, plain callable."""
    logits = cnn()
    return {
        "activation": cnn(activation="softmax"),
        "layer": keras.Sequential([logits, keras.layers.Softmax()]),
        "callable": lambda z: tf.nn.softmax(logits(z, training=False)),
    }


def test_every_exported_attack_is_covered():
    names = {cls.__name__ for cls in EXPORTED}
    assert {"PGD", "FGSM", "CWPGD", "APGD", "Square", "CleverhansAttack"} <= names


@pytest.mark.parametrize("kind", ["activation", "layer", "callable"])
@pytest.mark.parametrize("cls", EXPORTED, ids=lambda cls: cls.__name__)
def test_attack_refuses_probability_outputs(cls, kind):
    attack = make_attack(cls)
    model = probability_models()[kind]
    x, y = batch()
    with pytest.raises(ValueError, match="probabilities") as error:
        attack(model, x, y)
    message = str(error.value)
    assert "`model`" in message  # names the argument
    assert "sum to 1 per row" in message  # what was seen
    assert "softmax" in message and "activation=None" in message  # the fix


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda cls: cls.__name__)
def test_attack_accepts_logits_and_stays_in_the_ball(cls):
    attack = make_attack(cls)
    x, y = batch()
    # The same attack object first refuses a softmax model, then works on a logits one:
    # the refusal leaves no cached state behind.
    with pytest.raises(ValueError, match="probabilities"):
        attack(cnn(activation="softmax"), x, y)
    x_adv = attack(cnn(), x, y, batch_size=8).numpy()
    assert x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("activation", [None, "log_softmax", "relu", "sigmoid"])
def test_logits_that_are_not_probabilities_pass(activation):
    """Log-probabilities, non-negative outputs and per-class sigmoids are not a softmax:
    rows that do not sum to 1 are accepted."""
    x, y = batch()
    model = cnn(activation=activation)
    x_adv = km.attacks.PGD(eps=EPS, step_size=EPS / 2, num_steps=2, seed=0)(model, x, y)
    assert np.abs(x_adv.numpy() - x).max() <= EPS + 1e-6


def test_evaluate_robustness_refuses_probability_outputs():
    x, y = batch(n=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning followed by a report
        with pytest.raises(ValueError, match="probabilities") as error:
            km.evaluate_robustness(cnn(activation="softmax"), (x, y), eps=EPS,
                                   attacks=[km.attacks.FGSM(eps=EPS)], verbose=0)
    message = str(error.value)
    assert "`classifier`" in message and "activation=None" in message


def test_evaluate_robustness_refuses_a_wrapped_softmax_classifier():
    x, y = batch(n=24)
    with pytest.raises(ValueError, match="probabilities"):
        km.evaluate_robustness(probability_models()["layer"], (x, y), eps=EPS,
                               attacks="quick", checks=False, verbose=0)


def test_evaluate_robustness_accepts_logits():
    x, y = batch(n=24)
    model = cnn()
    report = km.evaluate_robustness(model, (x, y), eps=EPS,
                                    attacks=[km.attacks.FGSM(eps=EPS)], checks=False,
                                    verbose=0)
    predicted = np.argmax(model(tf.constant(x), training=False).numpy(), axis=1)
    assert report.clean_accuracy == pytest.approx(np.mean(predicted == y))
    assert 0.0 <= report.robust_accuracy <= report.clean_accuracy
