"""The experiment layer's data handling: which images each method trains on."""

import numpy as np


def test_meta_held_out_for_all_trains_every_method_on_the_bilevel_methods_images():
    import keras_mwat as km
    from keras_mwat.experiments.runs import _build_method

    data = km.data.load_embedded()
    attack = km.attacks.PGD(eps=0.1, num_steps=1)
    make = lambda spec, **kw: _build_method(  # noqa: E731
        spec, km.zoo.tiny_cnn(), attack, data, seed=0, meta_size=500, **kw)[1]
    full, control, mwat = make("pgd_at"), make("pgd_at", meta_held_out_for_all=True), make(
        "mwat")
    assert len(full.y_train) == 3500 and len(control.y_train) == len(mwat.y_train) == 3000
    np.testing.assert_array_equal(control.x_train, mwat.x_train)
    np.testing.assert_array_equal(control.y_train, mwat.y_train)
    assert mwat.meta is not None and len(mwat.meta[1]) == 500
