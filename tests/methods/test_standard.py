"""StandardModel (the paper's "plain" column): clean training, robust evaluation."""

import keras
import numpy as np
import tensorflow as tf

import keras_mwat as km
from tests.methods.helpers import clone, deterministic_attack, make_cnn, weights_of


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, 28, 28, 1)).astype("float32"),
            rng.integers(0, 10, n).astype("int64"))


def test_one_step_is_a_plain_sgd_step_on_clean_cross_entropy():
    x, y = _batch()
    base = make_cnn()
    model = km.StandardModel(clone(base), attack=deterministic_attack(), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), check_batches=False)
    model.train_on_batch(x, y)

    reference = clone(base)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, reference(x, training=True), from_logits=True))
    gradients = tape.gradient(loss, reference.trainable_variables)
    keras.optimizers.SGD(0.5).apply(gradients, reference.trainable_variables)
    for ours, expected in zip(weights_of(model.classifier), weights_of(reference)):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # and it is not PGD-AT: the same step on PGD examples moves the weights elsewhere
    at = km.PGDATModel(clone(base), attack=deterministic_attack(), seed=0)
    at.compile(optimizer=keras.optimizers.SGD(0.5), check_batches=False)
    at.train_on_batch(x, y)
    assert max(np.abs(a - b).max() for a, b in zip(weights_of(at.classifier),
                                                  weights_of(model.classifier))) > 1e-4


def test_evaluate_still_attacks_and_saving_round_trips(tmp_path):
    data = km.data.load_embedded(seed=0)
    model = km.StandardModel(make_cnn(), seed=0,
                             attack=km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=5))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(data.x_train[:1024], data.y_train[:1024], epochs=3, batch_size=64, verbose=0)
    scores = model.evaluate(data.x_test[:256], data.y_test[:256], return_dict=True, verbose=0)
    # Clean training learns, and is not robust at eps 0.3 (the evaluation attack is real).
    assert scores["accuracy"] > 0.5
    assert scores["robust_accuracy"] < scores["accuracy"] - 0.3
    # its val_loss is its own loss: the clean cross-entropy
    clean_ce = keras.losses.sparse_categorical_crossentropy(
        data.y_test[:256], model.classifier.predict(data.x_test[:256], verbose=0),
        from_logits=True)
    np.testing.assert_allclose(scores["loss"], float(np.mean(clean_ce)), rtol=1e-4)
    path = tmp_path / "plain.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is km.StandardModel
    np.testing.assert_array_equal(loaded.classifier.predict(data.x_test[:8], verbose=0),
                                  model.classifier.predict(data.x_test[:8], verbose=0))
