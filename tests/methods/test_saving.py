"""`.keras` round trip: a loaded model is compiled and continues `fit` exactly."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from tests.methods.helpers import clone, make_cnn, meta_set, method_kwargs, weights_of


@pytest.mark.parametrize("name", ["mwat", "pgd_at", "gairat"])
def test_loaded_model_continues_fit_like_an_uninterrupted_run(name, tiny_data, tmp_path):
    base = make_cnn(batch_norm=True)
    attack = km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=2)

    def new_model():
        keras.utils.set_random_seed(7)  # the same weight-network initialisation
        model = km.METHODS[name](**method_kwargs(name), classifier=clone(base), attack=attack, seed=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        return model

    data = dict(x=tiny_data.x_train, y=tiny_data.y_train, batch_size=32, shuffle=False,
                verbose=0)
    uninterrupted = new_model()
    uninterrupted.fit(epochs=2, **data)

    first = new_model()
    first.fit(epochs=1, **data)
    path = tmp_path / "m.keras"
    first.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True
    assert loaded.compiled and loaded.optimizer.iterations.numpy() == 3
    if isinstance(loaded, km.MWATModel):
        # The held-out meta set is data, not configuration: re-attach it to train on.
        with pytest.raises(ValueError, match="set_meta_data"):
            loaded.fit(epochs=2, initial_epoch=1, **data)
        loaded.set_meta_data(meta_set())
    loaded.fit(epochs=2, initial_epoch=1, **data)

    for a, b in zip(weights_of(loaded), weights_of(uninterrupted)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
