"""Bad input at the model boundary raises a clear error naming the argument and value."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from tests.methods.helpers import deterministic_attack, make_cnn, meta_set


@pytest.fixture
def model():
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer="sgd")
    return model


def test_labels_out_of_range(model, tiny_data):
    y = tiny_data.y_train[:32].copy()
    y[3] = 10
    with pytest.raises(ValueError, match=r"`y` has label 10"):
        model.fit(tiny_data.x_train[:32], y, verbose=0)


def test_labels_of_wrong_shape(model, tiny_data):
    with pytest.raises(ValueError, match="`y`"):
        model.fit(tiny_data.x_train[:32], tiny_data.y_train[:32].reshape(4, 8), verbose=0)


def test_nan_inputs(model, tiny_data):
    x = tiny_data.x_train[:32].copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        model.fit(x, tiny_data.y_train[:32], verbose=0)


def test_inputs_outside_value_range(model, tiny_data):
    with pytest.raises(ValueError, match=r"outside the declared value_range=\(0, 1\)"):
        model.fit(tiny_data.x_train[:32] * 255.0, tiny_data.y_train[:32], verbose=0)


def test_inputs_outside_value_range_in_a_dataset(model, tiny_data):
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((tiny_data.x_train[:32] * 255.0,
                                             tiny_data.y_train[:32])).batch(8)
    with pytest.raises(ValueError, match="first dataset batch"):
        model.fit(ds, verbose=0)


def test_wrong_input_shape(model):
    with pytest.raises(ValueError, match="sample shape"):
        model.fit(np.zeros((4, 32, 32, 3), "float32"), np.zeros(4, "int64"), verbose=0)


def test_classifier_with_softmax_is_rejected():
    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="softmax"):
        km.PGDATModel(classifier, attack=deterministic_attack())


def test_classifier_outputting_probabilities_is_rejected():
    inputs = keras.Input((4,))
    outputs = keras.layers.Softmax()(keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="probabilities"):
        km.PGDATModel(keras.Model(inputs, outputs), attack=deterministic_attack())


def test_unbuilt_classifier_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="not built"):
        km.MWATModel(Net())


@pytest.mark.parametrize("make_kwargs, match", [
    (lambda: {"margin": "hinge"}, "margin"),
    (lambda: {"meta_set": km.MetaSet(source="holdout")}, r"MetaSet\.source"),
    (lambda: {"meta_set": km.MetaSet(objective="kl")}, r"MetaSet\.objective"),
    (lambda: {"meta_set": km.MetaSet(fraction=1.0)}, r"MetaSet\.fraction"),
    (lambda: {"weight_normalization": "max"}, "weight_normalization"),
    (lambda: {"look_ahead": km.LookAhead(update_every=0)}, r"LookAhead\.update_every"),
    (lambda: {"look_ahead": km.LookAhead(step_size=-1.0)}, r"LookAhead\.step_size"),
    (lambda: {"look_ahead": km.LookAhead(meta_attack_model="theta")},
     r"LookAhead\.meta_attack_model"),
    (lambda: {"reweight_start_epoch": -1}, "reweight_start_epoch"),
    (lambda: {"meta_set": km.MetaSet(source="batch"), "meta_data": meta_set()}, "meta_data"),
    (lambda: {"meta_data": ([[0.0]], [0])}, "meta_data x"),
    (lambda: {"meta_set": {"source": "batch"}}, "`meta_set` must be a km.MetaSet"),
    # The deprecated flat spelling runs the same checks.
    (lambda: {"meta_source": "holdout"}, r"MetaSet\.source"),
    (lambda: {"inner_lr": -1.0}, r"LookAhead\.step_size"),
])
def test_bad_options(make_kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        km.MWATModel(make_cnn(), attack=deterministic_attack(), **make_kwargs())


def test_flat_options_are_deprecated_but_still_work():
    with pytest.warns(DeprecationWarning, match=r"pass meta_set=km\.MetaSet\(objective=\.\.\.\)"):
        model = km.MWATModel(make_cnn(), attack=deterministic_attack(),
                             meta_objective="both", meta_source="batch")
    assert (model.meta_set.objective, model.meta_set.source) == ("both", "batch")
    assert model.meta_objective == "both"  # the flat attributes read the groups
    with pytest.warns(DeprecationWarning, match=r"compile\(meta_optimizer=\.\.\.\)"):
        model = km.MWATModel(make_cnn(), attack=deterministic_attack(),
                             meta_set=km.MetaSet(source="batch"),
                             meta_optimizer=keras.optimizers.Adam(1e-3))
    assert isinstance(model.meta_optimizer, keras.optimizers.Adam)
    # MWN keeps its clean meta loss when only another flat option is given.
    with pytest.warns(DeprecationWarning):
        mwn = km.MWNModel(make_cnn(), attack=deterministic_attack(), meta_source="batch")
    assert mwn.meta_set.objective == "clean"


def test_meta_optimizer_is_given_to_compile(tiny_data, tmp_path):
    model = km.MWATModel(make_cnn(), attack=deterministic_attack(), seed=0,
                         meta_set=km.MetaSet(source="batch"))
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  meta_optimizer=keras.optimizers.SGD(0.7, momentum=0.5))
    assert model.meta_optimizer.built and float(model.meta_optimizer.momentum) == 0.5
    model.fit(tiny_data.x_train[:32], tiny_data.y_train[:32], batch_size=32, verbose=0)
    assert int(model.meta_optimizer.iterations.numpy()) == 1
    model.save(tmp_path / "mwat.keras")
    loaded = keras.saving.load_model(tmp_path / "mwat.keras")
    assert float(loaded.meta_optimizer.learning_rate) == pytest.approx(0.7)
    assert loaded.meta_set.source == "batch"
    with pytest.raises(ValueError, match="learns no weight network"):
        km.MWATNonParametricModel(make_cnn(), meta_set=km.MetaSet(source="batch")).compile(
            optimizer="sgd", meta_optimizer="adam")
