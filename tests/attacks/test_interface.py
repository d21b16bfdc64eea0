"""The attack interface: one ``perturb(model_fn, x, y, seed, loss_fn)`` for every attack.

Method-specific needs go through the attack object, not through ``perturb``'s arguments:
``scaled`` (the warm-up's smaller radius), ``with_init`` (TRADES's start),
``perturb_with_trace`` (GAIRAT's kappa). The keywords of earlier releases still work, with
a ``DeprecationWarning``, and give the same numbers.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat import attacks
from keras_mwat.attacks import APGD, CWPGD, FAB, FGSM, PGD, Attack, AttackTrace, Square, pgd

EPS = 0.3


def small_mlp(num_classes=4, features=6):
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(num_classes)])


def batch(n=32, features=6, num_classes=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, features)).astype("float32")
    return tf.constant(x), tf.constant(rng.integers(0, num_classes, n), tf.int64)


def inference(model):
    return lambda z: model(z, training=False)


def every_attack():
    """One small instance of every attack class (CleverHans only when installed)."""
    made = {
        "PGD": PGD(eps=EPS, step_size=0.1, num_steps=4, seed=0),
        "FGSM": FGSM(eps=EPS),
        "CWPGD": CWPGD(eps=EPS, step_size=0.1, num_steps=4, seed=0),
        "APGD": APGD(eps=EPS, num_steps=5, seed=0),
        "FAB": FAB(eps=EPS, num_steps=5, seed=0),
        "Square": Square(eps=EPS, num_queries=20, seed=0),
    }
    try:
        made["CleverhansAttack"] = attacks.CleverhansAttack(
            "projected_gradient_descent", eps=EPS, eps_iter=0.1, nb_iter=4, rand_init=False)
    except ImportError:
        pass
    return made


ATTACKS = every_attack()
TRACED = ("PGD", "FGSM", "CWPGD")


def test_perturb_is_written_once_with_a_lean_signature():
    library = [cls for cls in attacks._attack_classes().values()  # not tests' subclasses
               if cls.__module__.startswith("keras_mwat")]
    assert len(library) >= 6, library
    for cls in library:
        assert cls.perturb is Attack.perturb, cls
        assert cls.perturb_with_trace is Attack.perturb_with_trace, cls
    names = list(inspect.signature(Attack.perturb).parameters)
    assert names == ["self", "model_fn", "x", "y", "seed", "loss_fn", "deprecated"]
    names = list(inspect.signature(Attack.perturb_with_trace).parameters)
    assert names == ["self", "model_fn", "x", "y", "seed", "loss_fn"]
    assert {cls.__name__ for cls in library if cls.records_trace} == set(TRACED)


# ------------------------------------------------------------------------ scaled


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_scaled_attack_stays_in_the_smaller_ball(name):
    model = small_mlp()
    x, y = batch()
    attack = ATTACKS[name]
    fn = tf.function(lambda a, b, s: attack.scaled(s).perturb(inference(model), a, b, seed=5))
    for fraction in (0.0, 0.25):
        x_adv = fn(x, y, tf.constant(fraction)).numpy()
        assert np.abs(x_adv - x.numpy()).max() <= EPS * fraction + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    full = attack.perturb(inference(model), x, y, seed=5).numpy()
    assert np.abs(full - x.numpy()).max() > EPS * 0.25 + 1e-3  # the full radius is used


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_scaled_pgd_is_the_warm_up_arithmetic_bit_for_bit(norm):
    """``scaled(s)`` runs ``pgd`` with ``eps * s`` and ``step_size * s`` (the float32
    products the warm-up has always used), so warm-up numbers do not change."""
    model = small_mlp()
    x, y = batch()
    attack = PGD(eps=EPS, step_size=0.1, num_steps=4, norm=norm, num_restarts=2)
    strength = tf.constant(0.37)
    got = attack.scaled(strength).perturb(inference(model), x, y, seed=11)
    expected = pgd(inference(model), x, y, eps=EPS * strength, step_size=0.1 * strength,
                   num_steps=4, norm=norm, num_restarts=2, seed=11)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    smaller = PGD(eps=EPS * 0.25, step_size=0.1 * 0.25, num_steps=4, norm=norm,
                  num_restarts=2)
    np.testing.assert_allclose(
        attack.scaled(0.5).scaled(0.5).perturb(inference(model), x, y, seed=11).numpy(),
        smaller.perturb(inference(model), x, y, seed=11).numpy(), atol=1e-6)


def test_scaled_view_shares_the_generator_and_keeps_the_config():
    attack = PGD(eps=EPS, step_size=0.1, num_steps=4, seed=0)
    view = attack.scaled(0.5)
    assert type(view) is PGD and view is not attack
    assert view.seed_generator is attack.seed_generator
    assert view.with_init("normal").seed_generator is attack.seed_generator
    assert view.get_config() == attack.get_config()
    assert view.eps == attack.eps and repr(view) == repr(attack) + ".scaled(0.5)"
    # The view draws from the attack's generator: the two calls use successive states.
    model = small_mlp()
    x, y = batch()
    state = attack.seed_generator.state.numpy().copy()
    view.perturb(inference(model), x, y)
    assert not np.array_equal(state, attack.seed_generator.state.numpy())


@pytest.mark.parametrize("fraction, error, match", [
    (1.5, ValueError, r"`fraction` must be in \[0, 1\].*fraction=1.5"),
    (-0.1, ValueError, r"fraction=-0.1"),
    ("0.5", TypeError, r"fraction='0.5'"),
    (True, TypeError, r"fraction=True"),
])
def test_scaled_rejects_bad_fractions(fraction, error, match):
    with pytest.raises(error, match=match):
        PGD().scaled(fraction)


# --------------------------------------------------------------------- with_init


def test_with_init_changes_only_the_random_start():
    model = small_mlp()
    x, y = batch()
    attack = PGD(eps=EPS, step_size=0.1, num_steps=1, seed=0)
    normal = attack.with_init("normal")
    assert normal.init == "normal" and attack.init == "uniform"
    assert normal.get_config() == {**attack.get_config(), "init": "normal"}
    assert attack.with_init("uniform") is attack
    assert FGSM(eps=EPS).with_init("normal").get_config() == FGSM(eps=EPS).get_config()
    # A vanishing step shows the start: x + 0.001 N(0, 1) against uniform in the ball.
    still = PGD(eps=EPS, step_size=1e-9, num_steps=1, value_range=None)
    start_normal = still.with_init("normal").perturb(inference(model), x, y, seed=3).numpy()
    start_uniform = still.perturb(inference(model), x, y, seed=3).numpy()
    assert 0.0007 < np.std(start_normal - x.numpy()) < 0.0013
    assert np.abs(start_uniform - x.numpy()).max() > 0.2


@pytest.mark.parametrize("name", ["APGD", "FAB", "Square"])
def test_attacks_with_their_own_start_ignore_with_init(name):
    attack = ATTACKS[name]
    assert attack.with_init("normal") is attack


def test_with_init_names_a_bad_value():
    for attack in ATTACKS.values():
        with pytest.raises(ValueError, match="`init`.*init='gaussian'"):
            attack.with_init("gaussian")


# -------------------------------------------------------------------------- trace


@pytest.mark.parametrize("name", TRACED)
def test_trace_counts_correct_iterates_of_the_same_adversarial_examples(name):
    model = small_mlp()
    x, y = batch(64)
    attack = ATTACKS[name]
    fn = tf.function(lambda a, b: attack.perturb_with_trace(inference(model), a, b, seed=7))
    x_adv, trace = fn(x, y)
    assert isinstance(trace, AttackTrace) and trace.num_steps == attack.num_steps
    kappa = trace.correct_steps.numpy()
    assert trace.correct_steps.dtype == tf.int32 and kappa.shape == (64,)
    assert kappa.min() >= 0 and kappa.max() <= attack.num_steps
    # The same adversarial examples as perturb with the same seed.
    plain = attack.perturb(inference(model), x, y, seed=7)
    np.testing.assert_array_equal(x_adv.numpy(), plain.numpy())
    # Points misclassified at every iterate count 0, and no count exceeds K.
    if name == "FGSM":  # one step from x: kappa is whether x itself is classified correctly
        correct = np.argmax(model(x).numpy(), axis=1) == y.numpy()
        np.testing.assert_array_equal(kappa, correct.astype(np.int32))


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - set(TRACED)))
def test_attacks_without_a_trace_say_so(name):
    model = small_mlp()
    x, y = batch(4)
    with pytest.raises(ValueError, match=f"{type(ATTACKS[name]).__name__} records no trace"):
        ATTACKS[name].perturb_with_trace(inference(model), x, y)


def test_gairat_refuses_an_attack_without_a_trace(tiny_data):
    classifier = km.zoo.mlp(tiny_data.input_shape, tiny_data.num_classes, hidden_units=(8,))
    with pytest.raises(TypeError, match="record a trace.*got APGD"):
        km.GAIRATModel(classifier, attack=APGD(eps=0.1))


# ---------------------------------------------------------------- old keywords


def test_deprecated_keywords_warn_and_give_the_same_numbers():
    model = small_mlp()
    x, y = batch()
    attack = PGD(eps=EPS, step_size=0.1, num_steps=4)
    strength = tf.constant(0.6)
    with pytest.warns(DeprecationWarning, match="scaled.*with_init|perturb_with_trace"):
        old_x, old_kappa = attack.perturb(inference(model), x, y, seed=2, return_kappa=True,
                                          strength=strength, init="normal")
    new_x, trace = attack.scaled(strength).with_init("normal").perturb_with_trace(
        inference(model), x, y, seed=2)
    np.testing.assert_array_equal(old_x.numpy(), new_x.numpy())
    np.testing.assert_array_equal(old_kappa.numpy(), trace.correct_steps.numpy())
    with pytest.warns(DeprecationWarning):
        old = attack.perturb(inference(model), x, y, seed=2, strength=0.5)
    np.testing.assert_array_equal(
        old.numpy(), attack.scaled(0.5).perturb(inference(model), x, y, seed=2).numpy())
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="records no trace"):
        APGD(eps=EPS).perturb(inference(model), x, y, return_kappa=True)


def test_unknown_keywords_are_named():
    model = small_mlp()
    x, y = batch(4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'strenght'"):
        PGD().perturb(inference(model), x, y, strenght=0.5)
