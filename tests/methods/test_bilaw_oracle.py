"""One BiLAW iteration of ``MWATModel`` against an independent, hand-written oracle.

The oracle is plain TensorFlow written from the paper's Algorithm 1 for a linear softmax
classifier, with none of the library's code: its own PGD, margins, weight network, the pseudo
step differentiated by nested tapes, the weight-network step and the real step. Also: the
paper's variants (BiLAW-TRADES's unweighted CE, the non-parametric weights against a NumPy
oracle), the meta attack's warm-up strength, and ``sample_weight`` reaching every term.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km

D, K, N, N_META = 6, 4, 12, 8
EPS, STEP, STEPS = 0.1, 0.04, 3
BETA, ALPHA = 0.5, 5.0


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, size=(N, D)).astype("float32")
    y = rng.integers(0, K, N).astype("int32")
    x_meta = rng.uniform(0.2, 0.8, size=(N_META, D)).astype("float32")
    y_meta = rng.integers(0, K, N_META).astype("int32")
    return x, y, x_meta, y_meta


def make_model(cls=km.MWATModel, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    classifier = keras.Sequential([keras.Input((D,)), keras.layers.Dense(K)])
    # A larger initial scale so that the margins and weights differ between samples.
    classifier.set_weights([np.random.default_rng(seed + 1).normal(0, 2.0, (D, K)),
                            np.zeros(K)])
    attack = km.attacks.PGD(eps=EPS, step_size=STEP, num_steps=STEPS, random_start=False)
    options = {"meta_batch_size": N_META, "seed": seed}
    if cls is km.MWATModel:
        options.update(weight_net=km.WeightNetwork(hidden_units=(5,)),
                       meta_optimizer=keras.optimizers.SGD(ALPHA))
    options.update(kwargs)
    model = cls(classifier, attack=attack, **options)
    model.compile(optimizer=keras.optimizers.SGD(BETA, momentum=0.9))
    return model


# ------------------------------------------------------------------ the oracle
def ce(y, logits):
    return -tf.reduce_sum(tf.one_hot(y, K) * tf.nn.log_softmax(logits), axis=-1)


def pgd(weights, x, y):
    kernel, bias = (tf.stop_gradient(w) for w in weights)
    x_adv = tf.constant(x)
    for _ in range(STEPS):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.reduce_sum(ce(y, x_adv @ kernel + bias))
        x_adv = x_adv + STEP * tf.sign(tape.gradient(loss, x_adv))
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - EPS, x + EPS), 0.0, 1.0)
    return x_adv


def weight_net(mu, features):
    hidden = tf.nn.relu(features @ mu[0] + mu[1])
    return tf.sigmoid(hidden @ mu[2] + mu[3])[:, 0]


def oracle_iteration(theta, mu, x, y, x_meta, y_meta):
    """Algorithm 1 for one batch: returns (θ after the real step, µ after its step)."""
    x_adv = pgd(theta, x, y)
    probs = tf.nn.softmax(x @ theta[0] + theta[1])  # margins of the clean input at θ_t
    margins = tf.reduce_sum(probs * tf.one_hot(y, K), -1, keepdims=True) - probs

    def coefficients(mu_values):
        w = weight_net(mu_values, margins)
        return w / tf.reduce_sum(w)

    def train_gradient(c):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss = tf.reduce_sum(c * ce(y, x_adv @ theta[0] + theta[1]))
        return tape.gradient(loss, theta)

    with tf.GradientTape() as outer:
        outer.watch(mu)
        gradient = train_gradient(coefficients(mu))
        pseudo = [t - BETA * g for t, g in zip(theta, gradient)]       # 1. pseudo step
        x_meta_adv = pgd(pseudo, x_meta, y_meta)                      # attacked at θ̃
        meta_loss = tf.reduce_mean(ce(y_meta, x_meta_adv @ pseudo[0] + pseudo[1]))
    mu_new = [m - ALPHA * g for m, g in zip(mu, outer.gradient(meta_loss, mu))]  # 2.
    gradient = train_gradient(coefficients(mu_new))
    theta_new = [t - BETA * g for t, g in zip(theta, gradient)]     # 3. real step
    return theta_new, mu_new


def test_one_iteration_matches_the_papers_algorithm():
    x, y, x_meta, y_meta = make_data()
    model = make_model(meta_data=(x_meta, y_meta))
    theta = [tf.constant(v.numpy()) for v in model.classifier.trainable_variables]
    mu = [tf.constant(v.numpy()) for v in model.weight_net.trainable_variables]
    expected_theta, expected_mu = oracle_iteration(theta, mu, tf.constant(x), y,
                                                   tf.constant(x_meta), y_meta)
    model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(model.weight_net.trainable_variables, expected_mu):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=1e-6)
    for got, want in zip(model.classifier.trainable_variables, expected_theta):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=1e-6)
    # The weight network did move, and the weights are not uniform: not a trivial match.
    assert max(float(np.abs(g.numpy() - m.numpy()).max())
               for g, m in zip(model.weight_net.trainable_variables, mu)) > 1e-4


def test_meta_attack_model_current_differs_from_pseudo():
    x, y, x_meta, y_meta = make_data()
    results = []
    for where in ("pseudo", "current"):
        model = make_model(meta_data=(x_meta, y_meta), meta_attack_model=where)
        model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
        results.append(model.weight_net.trainable_variables[0].numpy())
    assert not np.allclose(results[0], results[1], rtol=0, atol=1e-9)


def test_margins_come_from_the_clean_input():
    x, y, x_meta, y_meta = make_data()
    model = make_model(meta_data=(x_meta, y_meta))
    step = km.methods.TrainingStep(
        x=tf.constant(x), y=tf.constant(y), x_adv=tf.constant(x) + 0.05,
        logits_clean=model.classifier(x), logits_adv=model.classifier(x + 0.05))
    features = model.weight_features(step).numpy()
    step.x_adv, step.logits_adv = step.x_adv + 0.05, model.classifier(x + 0.1)
    np.testing.assert_array_equal(model.weight_features(step).numpy(), features)
    assert features.shape == (N, K)
    np.testing.assert_array_equal(features[np.arange(N), y], 0.0)


# --------------------------------------------------------------- the variants
def test_bilaw_trades_weights_only_the_kl_term():
    x, y, x_meta, y_meta = make_data()
    model = make_model(meta_data=(x_meta, y_meta), base="trades")
    x_t, y_t = tf.constant(x), tf.constant(y)
    step = km.methods.TrainingStep(x=x_t, y=y_t, x_adv=x_t + 0.05,
                                   logits_clean=model.classifier(x_t))
    step.logits_adv = model.classifier(x_t + 0.05)
    step.logits_natural = model.classifier(x_t)
    weighted, unweighted = model.sample_losses(step)
    np.testing.assert_allclose(unweighted.numpy(), km.losses.cross_entropy(y, step.logits_natural),
                               rtol=1e-6)
    c1 = tf.fill([N], 1.0 / N)
    c2 = tf.constant(np.random.default_rng(0).dirichlet(np.ones(N)), tf.float32)
    step.weighted_loss, step.unweighted_loss = weighted, unweighted
    (_, _), (g1_w, g1_u) = (None, None), model.loss_targets(step, c1)[1]
    g2_w, g2_u = model.loss_targets(step, c2)[1]
    np.testing.assert_array_equal(g1_u.numpy(), g2_u.numpy())  # CE term: unweighted
    assert not np.allclose(g1_w.numpy(), g2_w.numpy())          # KL term: weighted
    np.testing.assert_allclose(weighted.numpy(),
                               6.0 * km.losses.kl(step.logits_natural, step.logits_adv),
                               rtol=1e-6)


def test_nonparametric_weights_match_the_alignment_rule():
    x, y, x_meta, y_meta = make_data(seed=2)
    model = make_model(km.MWATNonParametricModel, seed=2, meta_data=(x_meta, y_meta))
    kernel, bias = (v.numpy().astype("float64") for v in model.classifier.trainable_variables)
    x_adv = pgd([tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32)], x, y)
    x_adv = x_adv.numpy().astype("float64")

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def per_sample_gradients(inputs, labels, w, b):  # of CE for a linear model
        residual = softmax(inputs @ w + b) - np.eye(K)[labels]
        return np.einsum("nd,nk->ndk", inputs, residual), residual

    g_w, g_b = per_sample_gradients(x_adv, y, kernel, bias)
    pseudo_w, pseudo_b = kernel - BETA * g_w.mean(0), bias - BETA * g_b.mean(0)
    x_meta_adv = pgd([tf.constant(pseudo_w, tf.float32), tf.constant(pseudo_b, tf.float32)],
                     x_meta, y_meta).numpy().astype("float64")
    m_w, m_b = per_sample_gradients(x_meta_adv, y_meta, pseudo_w, pseudo_b)
    alignment = (np.einsum("ndk,dk->n", g_w, m_w.mean(0)) + g_b @ m_b.mean(0))
    expected = np.maximum(alignment, 0.0)
    expected = expected / expected.sum()
    assert 0 < np.count_nonzero(expected) < N  # some samples clipped, some kept

    inspected = model.inspect_weights(x, y)  # on the scale where a uniform weight is 1
    np.testing.assert_allclose(inspected["weight"], N * expected, rtol=1e-3, atol=1e-6)


# ------------------------------------------------ meta attack and sample weights
def test_meta_attack_obeys_the_warmup_strength():
    x, y, x_meta, y_meta = make_data()
    model = make_model(meta_data=(x_meta, y_meta))
    model.attack_strength.assign(0.0)
    step = km.methods.TrainingStep(x=tf.constant(x), y=tf.constant(y), x_adv=tf.constant(x),
                                   logits_clean=model.classifier(x))
    x_meta_adv = model.attack_meta_batch(step, tf.constant(x_meta), tf.constant(y_meta))
    np.testing.assert_array_equal(x_meta_adv.numpy(), x_meta)
    model.attack_strength.assign(1.0)
    x_meta_adv = model.attack_meta_batch(step, tf.constant(x_meta), tf.constant(y_meta))
    assert np.abs(x_meta_adv.numpy() - x_meta).max() == pytest.approx(EPS, rel=1e-5)


@pytest.mark.parametrize("name", ["pgd_at", "trades", "mart", "mail", "mwat", "mwat_trades",
                                  "mwat_nonparametric", "mwn"])
def test_zero_sample_weights_leave_every_weight_unchanged(name):
    x, y, x_meta, y_meta = make_data()
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((D,)), keras.layers.Dense(K)])
    attack = km.attacks.PGD(eps=EPS, step_size=STEP, num_steps=STEPS)
    cls = km.METHODS["mwat" if name == "mwat_trades" else name]
    kwargs = {"base": "trades"} if name == "mwat_trades" else {}
    if issubclass(cls, km.MWATModel):
        kwargs["meta_data"] = (x_meta, y_meta)
    model = cls(classifier, attack=attack, seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    nets = [model.classifier] + ([model.weight_net] if hasattr(model, "weight_net") else [])
    before = [v.numpy().copy() for net in nets for v in net.trainable_variables]
    model.fit(x, y, sample_weight=np.zeros(N), batch_size=N, epochs=1, verbose=0)
    after = [v.numpy() for net in nets for v in net.trainable_variables]
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


def test_fit_without_a_meta_set_fails_before_training_with_the_fix():
    x, y, _, _ = make_data()
    model = make_model()
    before = [v.numpy().copy() for v in model.classifier.trainable_variables]
    with pytest.raises(ValueError, match=r"held-out meta set[\s\S]*holdout_split"):
        model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.classifier.trainable_variables, before):
        np.testing.assert_array_equal(a.numpy(), b)
