"""Tests of ``pgd`` and the ``PGD`` / ``FGSM`` classes: oracles, invariants, validation."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import attacks, losses
from keras_mwat.attacks import FGSM, PGD, Attack, pgd

MODES = ["eager", "graph", "xla"]


# --------------------------------------------------------------------------- helpers


def linear_model(w, b):
    """Two-class logits ``[0, w . x + b]`` as a Keras model on flat inputs."""
    w = np.asarray(w, "float32")
    model = keras.Sequential([keras.Input((w.size,)), keras.layers.Dense(2)])
    kernel = np.stack([np.zeros_like(w), w], axis=1)
    model.layers[0].set_weights([kernel, np.array([0.0, b], "float32")])
    return model


def small_cnn(num_classes=3, activation="relu"):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation=activation),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def small_mlp(num_classes=3, features=6):
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(num_classes),
        ]
    )


def inference(model):
    return lambda z: model(z, training=False)


def per_sample_ce(model, x, y):
    return losses.cross_entropy(tf.constant(y), model(tf.constant(x), training=False)).numpy()


def softplus(z):
    return np.logaddexp(0.0, z)


def linear_problem(seed=0, n=5, d=7):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d).astype("float32")
    x = rng.uniform(0.2, 0.8, size=(n, d)).astype("float32")
    return w, 0.1, x, np.zeros(n, "int64")


# ------------------------------------------------------------------ closed-form oracle


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", [False, True])
def test_pgd_reaches_the_linear_worst_case(norm, start):
    w, b, x, y = linear_problem()
    model = linear_model(w, b)
    eps = 0.1 if norm == "linf" else 0.5
    x_adv = pgd(
        inference(model),
        x,
        y,
        eps=eps,
        step_size=eps if start else eps / 4,
        num_steps=20,
        norm=norm,
        random_start=start,
        value_range=None,
        seed=0,
    ).numpy()
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)
    expected = softplus(x @ w + b + eps * dual)
    np.testing.assert_allclose(per_sample_ce(model, x_adv, y), expected, rtol=1e-4)
    # The maximiser itself: eps * sign(w) or eps * w / ||w||.
    best = eps * np.sign(w) if norm == "linf" else eps * w / np.linalg.norm(w)
    np.testing.assert_allclose(x_adv - x, np.broadcast_to(best, x.shape), atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_reaches_the_linear_worst_case(norm):
    w, b, x, y = linear_problem(seed=1)
    model = linear_model(w, b)
    eps = 0.05 if norm == "linf" else 0.3
    x_adv = FGSM(eps=eps, norm=norm, value_range=None)(model, x, y).numpy()
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)
    np.testing.assert_allclose(
        per_sample_ce(model, x_adv, y), softplus(x @ w + b + eps * dual), rtol=1e-4
    )


def test_pgd_linear_worst_case_inside_the_box():
    """With a [0, 1] box the linf problem separates per coordinate: clip(x + eps sign w)."""
    w, b, _, y = linear_problem(seed=2)
    x = np.random.default_rng(2).choice([0.0, 0.03, 0.5, 0.98, 1.0], size=(5, 7)).astype("f")
    model = linear_model(w, b)
    x_adv = PGD(eps=0.1, step_size=0.03, num_steps=10, random_start=True, seed=0)(model, x, y)
    expected = np.clip(x + 0.1 * np.sign(w), 0.0, 1.0)
    np.testing.assert_allclose(x_adv.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        per_sample_ce(model, x_adv.numpy(), y), softplus(expected @ w + b), rtol=1e-4
    )


# ------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("init", ["uniform", "normal"])
def test_output_inside_ball_and_range(norm, init):
    rng = np.random.default_rng(3)
    # Many pixels at or near the bounds, where the clipping matters.
    x = rng.choice([0.0, 0.001, 0.5, 0.999, 1.0], size=(8, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=8)
    model = small_cnn()
    eps = 0.1 if norm == "linf" else 0.8
    attack = PGD(
        eps=eps, step_size=eps / 3, num_steps=5, norm=norm, num_restarts=2, seed=1, init=init
    )
    x_adv = attack(model, x, y).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert size.max() > 0.5 * eps  # the attack moved
    # The attack raises the loss.
    assert per_sample_ce(model, x_adv, y).mean() > per_sample_ce(model, x, y).mean()


def test_other_value_range_and_dtype():
    x = np.random.default_rng(4).uniform(-1, 1, size=(4, 6)).astype("float64")
    attack = PGD(eps=0.3, step_size=0.1, num_steps=3, value_range=(-1.0, 1.0), seed=0)
    x_adv = attack(small_mlp(), x, np.array([0, 1, 2, 0]))
    assert x_adv.dtype == tf.float64 and x_adv.shape == x.shape
    assert np.abs(x_adv.numpy()).max() <= 1.0
    assert np.abs(x_adv.numpy() - x).max() <= 0.3 + 1e-9


def test_integer_inputs_are_converted_to_float():
    x = np.random.default_rng(5).integers(0, 256, size=(3, 6)).astype("uint8")
    attack = PGD(eps=8.0, step_size=2.0, num_steps=2, value_range=(0, 255), seed=0)
    x_adv = attack(small_mlp(), x, [0, 1, 2])
    assert x_adv.dtype == tf.float32
    assert np.abs(x_adv.numpy() - x).max() <= 8.0 + 1e-4


def test_restarts_never_lower_the_loss():
    rng = np.random.default_rng(6)
    x = rng.uniform(size=(16, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=16)
    model = small_cnn()
    kwargs = dict(eps=0.1, step_size=0.02, num_steps=3, seed=7)
    single = per_sample_ce(model, PGD(num_restarts=1, **kwargs)(model, x, y).numpy(), y)
    multi = per_sample_ce(model, PGD(num_restarts=4, **kwargs)(model, x, y).numpy(), y)
    assert np.all(multi >= single - 1e-6)
    assert np.any(multi > single + 1e-6)  # some sample gains from another restart


def test_first_restart_equals_single_run():
    """Constant loss: no ascent and every restart ties, so restart 0 (the single run's
    start) must be kept."""
    x = np.random.default_rng(7).uniform(size=(6, 6)).astype("float32")
    y = np.zeros(6, "int64")
    model = small_mlp()

    def constant(labels, logits):
        return 0.0 * logits[:, 0]

    def run(restarts, seed):
        return pgd(
            inference(model),
            x,
            y,
            eps=0.2,
            step_size=0.05,
            num_steps=2,
            num_restarts=restarts,
            loss_fn=constant,
            seed=seed,
        ).numpy()

    for seed_fn in (lambda: 3, lambda: keras.random.SeedGenerator(3)):
        single = run(1, seed_fn())
        assert not np.allclose(single, x)  # the random start moved it
        np.testing.assert_array_equal(run(3, seed_fn()), single)


def test_restarts_keep_the_best_per_sample():
    """A loss that prefers the restart whose start is farthest above x in feature 0."""
    x = np.full((32, 4), 0.5, "float32")
    y = np.zeros(32, "int64")
    def model_fn(z):
        return tf.stack([tf.zeros_like(z[:, 0]), z[:, 0]], axis=1)

    def loss_fn(labels, logits):
        return logits[:, 1]  # increases with feature 0; its gradient is e_0

    def run(restarts):
        return pgd(model_fn, x, y, eps=0.2, step_size=1e-6, num_steps=1, loss_fn=loss_fn,
                   num_restarts=restarts, seed=5).numpy()

    out, best = run(1), run(8)
    assert np.all(best[:, 0] >= out[:, 0] - 1e-7)
    assert np.mean(best[:, 0] > out[:, 0]) > 0.5
    assert best[:, 0].mean() > 0.5 + 0.15  # max of 8 uniforms in [-0.2, 0.2]


def test_forward_passes_per_step_and_restart():
    """One forward per step; restarts add one forward each to pick the best."""
    x = np.random.default_rng(20).uniform(size=(4, 6)).astype("float32")
    model = small_mlp()
    calls = []

    def counting(z):
        calls.append(1)
        return model(z, training=False)

    for restarts, expected in ((1, 3), (2, 8)):
        calls.clear()
        pgd(
            counting,
            x,
            [0, 1, 2, 0],
            eps=0.1,
            step_size=0.05,
            num_steps=3,
            num_restarts=restarts,
            seed=0,
            return_kappa=True,
        )
        assert len(calls) == expected


def test_step_loop_is_not_unrolled():
    model = small_mlp()
    spec = (tf.TensorSpec([None, 6], tf.float32), tf.TensorSpec([None], tf.int64))

    def graph_size(num_steps, num_restarts):
        fn = tf.function(
            lambda a, b: pgd(
                inference(model),
                a,
                b,
                eps=0.1,
                step_size=0.05,
                num_steps=num_steps,
                num_restarts=num_restarts,
                seed=0,
            )
        )
        graph = fn.get_concrete_function(*spec).graph
        ops = [op.type for op in graph.get_operations()]
        assert any("While" in op for op in ops)
        return len(ops)

    assert graph_size(2, 1) == graph_size(50, 1)
    assert graph_size(2, 2) == graph_size(50, 7)


# ---------------------------------------------------------------------------- kappa


def reference_pgd_with_kappa(model, x, y, eps, step_size, num_steps):
    """Eager step-by-step PGD (linf, no random start, [0, 1] box) and GAIRAT's kappa."""
    x0 = tf.constant(x)
    x_adv = tf.constant(x)
    kappa = np.zeros(len(x), "int32")
    for _ in range(num_steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = model(x_adv, training=False)
            loss = tf.reduce_sum(losses.cross_entropy(tf.constant(y), logits))
        kappa += (np.argmax(logits.numpy(), axis=1) == y).astype("int32")
        grad = tape.gradient(loss, x_adv)
        x_adv = x_adv + step_size * tf.sign(grad)
        x_adv = tf.clip_by_value(x0 + tf.clip_by_value(x_adv - x0, -eps, eps), 0.0, 1.0)
    return x_adv.numpy(), kappa


def test_kappa_matches_a_step_by_step_reference():
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(64, 6)).astype("float32")
    model = small_mlp()
    y = np.argmax(model.predict(x, verbose=0), axis=1)  # all clean points correct
    y[:8] = (y[:8] + 1) % 3  # ... but a few
    ref_x, ref_kappa = reference_pgd_with_kappa(model, x, y, eps=0.5, step_size=0.1, num_steps=6)
    x_adv, kappa = pgd(
        inference(model),
        x,
        y,
        eps=0.5,
        step_size=0.1,
        num_steps=6,
        random_start=False,
        return_kappa=True,
    )
    assert kappa.dtype == tf.int32 and kappa.shape == (64,)
    np.testing.assert_array_equal(kappa.numpy(), ref_kappa)
    np.testing.assert_allclose(x_adv.numpy(), ref_x, atol=1e-6)
    assert len(np.unique(ref_kappa)) >= 3  # the oracle is not trivially constant


def test_kappa_with_restarts_and_in_graph():
    rng = np.random.default_rng(9)
    x = rng.uniform(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, size=16)
    model = small_mlp()
    attack = PGD(eps=0.3, step_size=0.1, num_steps=4, num_restarts=3, seed=0)
    fn = tf.function(lambda a, b: attack.perturb_with_trace(inference(model), a, b))
    x_adv, trace = fn(tf.constant(x), tf.constant(y))
    kappa = trace.correct_steps
    assert x_adv.shape == x.shape and trace.num_steps == 4
    assert kappa.dtype == tf.int32
    assert kappa.numpy().min() >= 0 and kappa.numpy().max() <= 4


# ------------------------------------------------------------------ determinism, graph


def test_same_seed_same_output():
    rng = np.random.default_rng(10)
    x = rng.uniform(size=(8, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, size=8)
    model = small_cnn()
    first = PGD(eps=0.1, step_size=0.02, num_steps=2, seed=3)(model, x, y).numpy()
    again = PGD(eps=0.1, step_size=0.02, num_steps=2, seed=3)(model, x, y).numpy()
    other = PGD(eps=0.1, step_size=0.02, num_steps=2, seed=4)(model, x, y).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # The functional form with an int seed is deterministic too.
    kwargs = dict(eps=0.1, step_size=0.02, num_steps=2, seed=3, norm="l2")
    np.testing.assert_array_equal(
        pgd(inference(model), x, y, **kwargs).numpy(),
        pgd(inference(model), x, y, **kwargs).numpy(),
    )


def test_output_is_gradient_stopped():
    x = tf.constant(np.random.default_rng(11).uniform(size=(4, 6)).astype("float32"))
    model = small_mlp()
    with tf.GradientTape() as tape:
        tape.watch(x)
        x_adv = pgd(inference(model), x, [0, 1, 2, 0], eps=0.1, step_size=0.05, num_steps=2, seed=0)
        total = tf.reduce_sum(x_adv * x_adv)
    assert tape.gradient(total, x) is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturb_in_graph_and_xla_matches_eager(mode, norm):
    rng = np.random.default_rng(12)
    x = tf.constant(rng.uniform(size=(8, 6)).astype("float32"))
    y = tf.constant(rng.integers(0, 3, size=8))
    model = small_mlp()
    attack = PGD(eps=0.3, step_size=0.1, num_steps=4, norm=norm, random_start=False)
    expected = attack.perturb(inference(model), x, y).numpy()
    fn = lambda a, b: attack.perturb(inference(model), a, b)  # noqa: E731
    if mode != "eager":
        fn = tf.function(fn, jit_compile=(mode == "xla"))
    np.testing.assert_allclose(fn(x, y).numpy(), expected, atol=1e-5)


def test_perturb_with_a_seed_generator_in_graph():
    x = tf.constant(np.random.default_rng(13).uniform(size=(8, 6)).astype("float32"))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    model = small_mlp()
    attack = PGD(eps=0.2, step_size=0.05, num_steps=2, num_restarts=2)

    def make(seed):
        gen = keras.random.SeedGenerator(seed)
        return tf.function(lambda a, b: attack.perturb(inference(model), a, b, seed=gen))

    fn = make(1)
    first, second = fn(x, y).numpy(), fn(x, y).numpy()
    assert not np.allclose(first, second)  # the generator advanced
    np.testing.assert_array_equal(make(1)(x, y).numpy(), first)


def test_attack_without_seed_creates_its_generator_lazily_in_graph():
    x = tf.constant(np.random.default_rng(14).uniform(size=(4, 6)).astype("float32"))
    model = small_mlp()
    attack = PGD(eps=0.2, step_size=0.05, num_steps=2, seed=2)
    fn = tf.function(lambda a, b: attack.perturb(inference(model), a, b))
    a, b = fn(x, tf.constant([0, 1, 2, 0])), fn(x, tf.constant([0, 1, 2, 0]))
    assert not np.allclose(a.numpy(), b.numpy())


def test_call_caches_one_function_per_model_and_batches():
    rng = np.random.default_rng(15)
    x = rng.uniform(size=(10, 6)).astype("float32")
    y = rng.integers(0, 3, size=10)
    model = small_mlp()
    attack = PGD(eps=0.2, step_size=0.05, num_steps=3, random_start=False)
    full = attack(model, x, y)
    again = attack(model, tf.constant(x), tf.constant(y))
    run = attack._function_for(model)
    assert run is attack._function_for(model)
    assert run.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(full.numpy(), again.numpy())
    chunked = attack(model, x, y, batch_size=4)
    np.testing.assert_allclose(chunked.numpy(), full.numpy(), atol=1e-6)
    # One-hot labels are accepted.
    np.testing.assert_array_equal(attack(model, x, np.eye(3)[y]).numpy(), full.numpy())
    # Changing a hyperparameter rebuilds the function.
    attack.eps = 0.0
    np.testing.assert_allclose(attack(model, x, y).numpy(), x, atol=0)


def test_call_on_a_model_without_input_shape():
    model = keras.Sequential([keras.layers.Dense(4)])  # built on first call
    x = np.random.default_rng(16).uniform(size=(3, 5)).astype("float32")
    x_adv = FGSM(eps=0.1)(model, x, [0, 3, 1])
    assert x_adv.shape == (3, 5)
    with pytest.raises(ValueError, match="`y`"):
        FGSM(eps=0.1)(model, x, [0, 4, 1])


def test_fgsm_is_one_signed_step():
    x = np.random.default_rng(17).uniform(0.2, 0.8, size=(4, 6)).astype("float32")
    y = np.array([0, 1, 2, 0])
    model = small_mlp()
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.reduce_sum(losses.cross_entropy(tf.constant(y), model(x_t)))
    expected = np.clip(x + 0.1 * np.sign(tape.gradient(loss, x_t).numpy()), 0, 1)
    np.testing.assert_allclose(FGSM(eps=0.1)(model, x, y).numpy(), expected, atol=1e-6)


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eps": -0.1}, "eps"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_restarts": 0}, "num_restarts"),
        ({"norm": "l1"}, "norm"),
        ({"init": "zeros"}, "init"),
        ({"value_range": (1.0, 0.0)}, "value_range"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        PGD(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eps": "0.1"}, "eps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"random_start": "yes"}, "random_start"),
        ({"value_range": 1.0}, "value_range"),
    ],
)
def test_bad_argument_types_raise_type_error(kwargs, name):
    with pytest.raises(TypeError, match=f"`{name}`"):
        PGD(**kwargs)


def test_fgsm_validates_eps_and_norm():
    with pytest.raises(ValueError, match="`eps`"):
        FGSM(eps=-1.0)
    with pytest.raises(ValueError, match="`norm`"):
        FGSM(norm="l0")
    assert FGSM(eps=0.0).step_size == 0.0


def test_bad_inputs_raise():
    model = small_mlp()
    attack = PGD(eps=0.1, step_size=0.05, num_steps=1)
    x = np.random.default_rng(18).uniform(size=(4, 6)).astype("float32")
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="`y` has label 3"):
        attack(model, x, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="`y` has label -1"):
        attack(model, x, np.array([0, 1, -1, 0]))
    with pytest.raises(ValueError, match="`y` has 3 labels"):
        attack(model, x, y[:3])
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        attack(model, bad, y)
    with pytest.raises(ValueError, match="`x` has values .* outside the declared value_range"):
        attack(model, x * 255.0, y)
    with pytest.raises(ValueError, match="`x`"):
        attack(model, x[0], y)
    with pytest.raises(ValueError, match="`batch_size`"):
        attack(model, x, y, batch_size=0)


# ---------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    "attack",
    [
        PGD(
            eps=0.3,
            step_size=0.01,
            num_steps=40,
            norm="l2",
            random_start=False,
            num_restarts=3,
            value_range=None,
            seed=5,
            init="normal",
        ),
        PGD(),
        FGSM(eps=0.2, norm="l2", value_range=(-1.0, 1.0), seed=1),
    ],
    ids=["pgd", "pgd-default", "fgsm"],
)
def test_config_round_trip(attack):
    config = attack.get_config()
    clone = type(attack).from_config(config)
    assert type(clone) is type(attack) and clone.get_config() == config
    for name, value in config.items():
        assert getattr(clone, name) == value  # attributes named like the arguments
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(attack)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(attack) and restored.get_config() == config
    assert attacks.get(serialized).get_config() == config
    assert attacks.get({"class_name": type(attack).__name__, "config": config}).get_config() == (
        config
    )


def test_config_keys_are_the_constructor_arguments():
    assert set(PGD().get_config()) == {
        "eps",
        "step_size",
        "num_steps",
        "norm",
        "random_start",
        "num_restarts",
        "value_range",
        "seed",
        "init",
    }
    assert set(FGSM().get_config()) == {"eps", "norm", "value_range", "seed"}


def test_get():
    attack = PGD()
    assert attacks.get(attack) is attack
    assert attacks.get(None) is None
    assert isinstance(attacks.get({"class_name": "FGSM", "config": {}}), FGSM)
    assert isinstance(attack, Attack) and isinstance(FGSM(), PGD)
    with pytest.raises(TypeError, match="identifier"):
        attacks.get("pgd")


def test_base_attack_perturb_is_abstract():
    with pytest.raises(NotImplementedError, match="perturb"):
        Attack().perturb(lambda z: z, tf.zeros((1, 2)), tf.zeros((1,)))
