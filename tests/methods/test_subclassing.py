"""Subclassing: a method's subclass adds its own state after ``super().__init__()``.

Keras locks a model's state once it is built; the constructors no longer build the wrapper
(``build()`` runs on first use), so the subclass's tracker and variable are tracked, reset
and logged like the method's own.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods.helpers import deterministic_attack, make_cnn, method_kwargs


def with_extra_state(base):
    """A subclass of ``base`` logging the mean per-sample weighted loss and counting steps."""

    class Extra(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = keras.metrics.Mean(name="extra")
            self.steps_seen = keras.Variable(0, dtype="int64", trainable=False,
                                             name="steps_seen")

        def method_metrics(self):
            return [*super().method_metrics(), self.extra]

        def sample_weights(self, step):
            self.extra.update_state(tf.reduce_mean(step.weighted_loss))
            self.steps_seen.assign_add(1)
            return super().sample_weights(step)

    return Extra


@pytest.mark.parametrize("base", [km.PGDATModel, km.MWATModel])
def test_subclass_adds_state_after_super_init_and_trains(base, tiny_data):
    model = with_extra_state(base)(make_cnn(), attack=deterministic_attack(), seed=0,
                                   **method_kwargs(base))
    assert not model.built  # the constructor leaves building to first use
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    assert model.built
    assert any(v is model.steps_seen for v in model.non_trainable_variables)
    history = model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32,
                        epochs=2, shuffle=False, verbose=0).history
    assert int(model.steps_seen.numpy()) == 4
    assert len(history["extra"]) == 2
    if base is km.PGDATModel:  # uniform weights: the loss is the mean weighted loss
        np.testing.assert_allclose(history["extra"], history["loss"], rtol=1e-6)
    else:
        assert np.all(np.isfinite(history["extra"])) and min(history["extra"]) > 0


def test_constructors_do_not_build_and_finish_init_builds_without_compile():
    for name, model_class in km.METHODS.items():
        model = model_class(make_cnn(), attack=deterministic_attack(), seed=0,
                            **method_kwargs(model_class))
        assert not model.built, name
    model.finish_init()
    assert model.built
    model.finish_init()  # idempotent
    with pytest.raises(ValueError, match=r"`input_shape` must be \(batch, \*\(28, 28, 1\)\)"):
        km.PGDATModel(make_cnn()).build((None, 8, 8, 1))
