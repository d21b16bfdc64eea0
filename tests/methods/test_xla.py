"""XLA: ``compile(jit_compile=True)`` trains every method on one device like the plain graph."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods import distribute_script as setup

CONFIGS = ["mwat_batch", "mwat_split", "mwat_reverse", "mwn", "pgd_at", "trades", "mart", "mail", "gairat",
           "wmmr"]


@pytest.fixture(scope="module")
def data():
    x, y, x_meta, y_meta = setup.make_data()
    return x, y, setup.configurations(x_meta, y_meta)


def _train(model_class, options, x, y, jit_compile):
    model = setup.build(model_class, options, jit_compile=jit_compile)
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(setup.GLOBAL_BATCH),
                        epochs=2, shuffle=False, verbose=0)
    return model, history.history


@pytest.mark.parametrize("name", CONFIGS)
def test_xla_matches_the_plain_graph(data, name):
    x, y, table = data
    model_class, options = table[name]
    plain, plain_logs = _train(model_class, options, x, y, jit_compile=False)
    compiled, compiled_logs = _train(model_class, options, x, y, jit_compile=True)
    assert compiled.jit_compile is True and plain.jit_compile is False
    initial = setup.build(model_class, options).get_weights()
    moved = max(np.abs(np.asarray(a, float) - np.asarray(b, float)).max()
                for a, b in zip(plain.get_weights(), initial))
    assert moved > 1e-3  # the comparison is not vacuous
    for a, b in zip(plain.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(np.asarray(b, float), np.asarray(a, float), rtol=0,
                                   atol=1e-5)
    for key, values in plain_logs.items():
        np.testing.assert_allclose(compiled_logs[key], values, rtol=1e-5, atol=1e-6,
                                   err_msg=key)


def test_xla_with_a_meta_dataset_is_refused_clearly(data):
    _, _, table = data
    model_class, options = table["mwat_meta_dataset"]
    with pytest.raises(ValueError, match="jit_compile=True.*meta_data"):
        setup.build(model_class, options, jit_compile=True)
    # "auto" (XLA on a GPU) falls back to the plain graph instead.
    assert setup.build(model_class, options, jit_compile="auto").jit_compile is False


def test_xla_refusal_names_the_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = km.PGDATModel(km.zoo.mlp(input_shape=(4,), num_classes=3, hidden_units=()),
                              attack=km.attacks.FGSM(eps=0.1))
        with pytest.raises(ValueError, match="jit_compile=True.*MirroredStrategy"):
            model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert model.jit_compile is False
