"""Tests of ``CleverhansAttack``: agreement with our PGD/FGSM, contract, errors, extras."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat.attacks import FGSM, PGD
from keras_mwat.attacks.cleverhans import INSTALL_HINT, SUPPORTED, CleverhansAttack

cleverhans_attacks = pytest.importorskip("cleverhans.tf2.attacks")
from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2  # noqa: E402
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method  # noqa: E402
from cleverhans.tf2.attacks.projected_gradient_descent import (  # noqa: E402
    projected_gradient_descent,
)

ITERATIVE = {"eps_iter": 0.03, "nb_iter": 4}
KWARGS = {
    "fast_gradient_method": {},
    "projected_gradient_descent": {**ITERATIVE, "rand_init": True},
    "basic_iterative_method": ITERATIVE,
    "madry_et_al": {**ITERATIVE, "rand_minmax": 0.05},
    "momentum_iterative_method": ITERATIVE,
}


def small_cnn(num_classes=3):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def inference(model):
    return lambda z: model(z, training=False)


def batch(seed=0, n=12):
    rng = np.random.default_rng(seed)
    # Many values at or near the bounds, where the clipping matters.
    x = rng.choice([0.0, 0.01, 0.3, 0.7, 0.99, 1.0], size=(n, 6, 6, 2)).astype("float32")
    return x, rng.integers(0, 3, size=n)


# ------------------------------------------------------------- agreement with ours


@pytest.mark.parametrize(
    ("norm", "eps", "step", "value_range"),
    [("linf", 0.1, 0.02, (0.0, 1.0)), ("l2", 0.5, 0.1, None)],
)
def test_our_pgd_agrees_with_cleverhans_pgd(norm, eps, step, value_range):
    """Deterministic PGD (no random start): same steps, projection and clipping.

    With a box, L2 projection and clipping do not commute, and CleverHans clips before
    projecting; the L2 case is therefore compared without a box.
    """
    x, y = batch()
    model = small_cnn()
    ours = PGD(eps=eps, step_size=step, num_steps=8, norm=norm, random_start=False,
               value_range=value_range)(model, x, y).numpy()
    clip = {} if value_range is None else dict(clip_min=0.0, clip_max=1.0)
    theirs = projected_gradient_descent(
        inference(model), tf.constant(x), eps, step, 8, np.inf if norm == "linf" else 2,
        y=tf.constant(y), rand_init=False, sanity_checks=False, **clip,
    ).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.abs(ours - x).max() > 0.5 * step  # a non-trivial comparison
    wrapped = CleverhansAttack("projected_gradient_descent", eps=eps, norm=norm,
                               value_range=value_range, eps_iter=step, nb_iter=8)
    np.testing.assert_allclose(wrapped(model, x, y).numpy(), theirs, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_our_fgsm_agrees_with_cleverhans_fgm(norm):
    x, y = batch(1)
    model = small_cnn()
    eps = 0.1 if norm == "linf" else 0.5
    ours = FGSM(eps=eps, norm=norm, value_range=None)(model, x, y).numpy()
    wrapped = CleverhansAttack(fast_gradient_method, eps=eps, norm=norm, value_range=None)
    np.testing.assert_allclose(wrapped(model, x, y).numpy(), ours, atol=1e-6)


# ---------------------------------------------------------------------- the contract


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", SUPPORTED)
def test_output_inside_ball_and_range(name, norm):
    x, y = batch(2)
    model = small_cnn()
    eps = 0.1 if norm == "linf" else 0.5
    attack = CleverhansAttack(name, eps=eps, norm=norm, **KWARGS[name])
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == tf.float32
    x_adv = x_adv.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-7 and size.max() > 0


def test_float64_inputs_and_other_range():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(5, 6, 6, 2))
    model = small_cnn()
    attack = CleverhansAttack("projected_gradient_descent", eps=0.2, eps_iter=0.05, nb_iter=3,
                              value_range=(-1.0, 1.0))
    x_adv = attack.perturb(lambda z: model(tf.cast(z, tf.float32)), tf.constant(x),
                           tf.constant([0, 1, 2, 0, 1]))
    assert x_adv.dtype == tf.float64
    assert np.abs(x_adv.numpy()).max() <= 1.0
    assert np.abs(x_adv.numpy() - x).max() <= 0.2 + 1e-6


def test_strength_in_graph_equals_a_smaller_attack():
    x, y = batch(4)
    model = small_cnn()
    full = CleverhansAttack("projected_gradient_descent", eps=0.2, eps_iter=0.04, nb_iter=5)
    half = CleverhansAttack("projected_gradient_descent", eps=0.1, eps_iter=0.02, nb_iter=5)
    fn = tf.function(
        lambda a, b, s: full.scaled(s).perturb(inference(model), a, b)
    )
    got = fn(tf.constant(x), tf.constant(y), tf.constant(0.5)).numpy()
    np.testing.assert_allclose(got, half(model, x, y).numpy(), atol=1e-6)
    np.testing.assert_array_equal(fn(tf.constant(x), tf.constant(y), tf.constant(0.0)), x)


def test_loss_fn_is_maximised_like_our_pgd():
    x, y = batch(5)
    model = small_cnn()

    def logit_one(labels, logits):
        return logits[:, 1]

    attack = CleverhansAttack("projected_gradient_descent", eps=0.1, eps_iter=0.02, nb_iter=5)
    ours = PGD(eps=0.1, step_size=0.02, num_steps=5, random_start=False)
    got = attack.perturb(inference(model), tf.constant(x), tf.constant(y), loss_fn=logit_one)
    expected = ours.perturb(inference(model), tf.constant(x), tf.constant(y), loss_fn=logit_one)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
    mim = CleverhansAttack("momentum_iterative_method", eps=0.1, **ITERATIVE)
    with pytest.raises(ValueError, match="loss_fn"):
        mim.perturb(inference(model), tf.constant(x), tf.constant(y), loss_fn=logit_one)
    with pytest.raises(ValueError, match="records no trace"):
        attack.perturb_with_trace(inference(model), tf.constant(x), tf.constant(y))


def test_trains_a_model_in_graph(tiny_data):
    classifier = km.zoo.mlp(tiny_data.input_shape, tiny_data.num_classes, hidden_units=(16,))
    attack = CleverhansAttack("projected_gradient_descent", eps=0.1, eps_iter=0.05, nb_iter=2,
                              rand_init=True)
    model = km.PGDATModel(classifier, attack=attack, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=1,
                        verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert "robust_accuracy" in history.history


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("fn", ["carlini_wagner_l2", "spsa", carlini_wagner_l2])
def test_cw_l2_and_spsa_are_rejected_with_the_reason(fn):
    with pytest.raises(ValueError, match="broken on Keras 3 because .*optimizer"):
        CleverhansAttack(fn, eps=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fn": "deepfool"}, ValueError, "`fn` must be one of"),
        ({"fn": 3}, TypeError, "`fn`"),
        ({"fn": "projected_gradient_descent", "nb_iter": 3}, TypeError, r"\['eps_iter'\]"),
        ({"fn": "fast_gradient_method", "nb_iter": 3}, TypeError, "no argument `nb_iter`"),
        ({"fn": "fast_gradient_method", "clip_min": 0.0}, TypeError, "value_range"),
        ({"fn": "fast_gradient_method", "y": [0]}, TypeError, "`y`"),
        ({"fn": "fast_gradient_method", "targeted": True}, ValueError, "`targeted`"),
        ({"fn": "momentum_iterative_method", "sanity_checks": True}, ValueError,
         "`sanity_checks`"),
        ({"fn": "projected_gradient_descent", "eps_iter": 0.5, "nb_iter": 2}, ValueError,
         "`eps_iter` must be <= eps"),
        ({"fn": "projected_gradient_descent", "eps_iter": -0.1, "nb_iter": 2}, ValueError,
         "`eps_iter`"),
        ({"fn": "projected_gradient_descent", "eps_iter": 0.01, "nb_iter": 0}, ValueError,
         "`nb_iter`"),
        ({"fn": "fast_gradient_method", "eps": -1.0}, ValueError, "`eps`"),
        ({"fn": "fast_gradient_method", "norm": 1}, ValueError, "`norm`"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        CleverhansAttack(**kwargs)


def test_cleverhans_norms_are_accepted():
    assert CleverhansAttack("fast_gradient_method", norm=np.inf).norm == "linf"
    assert CleverhansAttack("fast_gradient_method", norm=2).norm == "l2"


def test_missing_cleverhans_gives_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "cleverhans" or m.startswith("cleverhans.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cleverhans", None)
    with pytest.raises(ImportError, match=r'pip install "keras-mwat\[cleverhans\]"'):
        CleverhansAttack("projected_gradient_descent", eps_iter=0.01, nb_iter=1)
    assert "pip install cleverhans" in INSTALL_HINT


def test_no_module_imports_cleverhans_at_import_time():
    """cleverhans is imported lazily, inside functions, so keras_mwat imports without it."""
    package = Path(km.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name == "cleverhans" or name.startswith("cleverhans.") for name in names):
                offenders.append(str(path.relative_to(package)))
    assert offenders == []


@pytest.mark.slow
def test_keras_mwat_imports_without_cleverhans():
    """In a fresh interpreter where cleverhans cannot be imported (slow: imports TF)."""
    code = (
        "import sys; sys.modules['cleverhans'] = None\n"
        "import keras_mwat\n"
        "from keras_mwat.attacks.cleverhans import CleverhansAttack\n"
        "try:\n"
        "    CleverhansAttack('fast_gradient_method')\n"
        "except ImportError as error:\n"
        "    print('IMPORT-ERROR', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORT-ERROR" in result.stdout and "keras-mwat[cleverhans]" in result.stdout


# ---------------------------------------------------------------------- serialisation


def test_config_round_trip():
    attack = CleverhansAttack(projected_gradient_descent, eps=0.3, norm="l2", eps_iter=0.05,
                              nb_iter=7, rand_init=True, value_range=None, seed=2)
    config = attack.get_config()
    assert config["fn"] == "projected_gradient_descent"  # the function is stored by name
    assert config["eps_iter"] == 0.05 and config["nb_iter"] == 7 and config["rand_init"]
    clone = CleverhansAttack.from_config(config)
    assert clone.fn is projected_gradient_descent and clone.get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(attack)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is CleverhansAttack and restored.get_config() == config
    assert km.attacks.get({"class_name": "CleverhansAttack", "config": config}).get_config() == (
        config
    )
