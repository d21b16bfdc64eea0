"""WeightHistory: per-epoch weights of a fixed probe set, in an .npz that survives resumes."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.callbacks import WEIGHT_HISTORY_KEYS, WeightHistory

PROBE = 12


def _mwat(data, seed=0):
    keras.utils.set_random_seed(seed)
    attack = km.attacks.PGD(eps=0.1, step_size=0.04, num_steps=2, seed=0)
    model = km.MWATModel(km.zoo.small_cnn(width=4), attack=attack, meta_data=data.validation,
                         meta_batch_size=16, seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    return model


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_data):
    """MWAT trained 2 epochs with and without the callback, from the same seed."""
    path = tmp_path_factory.mktemp("history") / "weight_history.npz"
    x, y = tiny_data.x_train[:PROBE], tiny_data.y_train[:PROBE]
    with_callback = _mwat(tiny_data)
    callback = WeightHistory(x, y, path, index=np.arange(PROBE) + 100, batch_size=5)
    with_callback.fit(*tiny_data.train, batch_size=32, epochs=2, verbose=0,
                      callbacks=[callback])
    without = _mwat(tiny_data)
    without.fit(*tiny_data.train, batch_size=32, epochs=2, verbose=0)
    return path, with_callback, without, callback


def test_the_file_holds_one_row_per_epoch(recorded, tiny_data):
    path, model, _, _ = recorded
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["epoch"], [0, 1])
        np.testing.assert_array_equal(saved["y"], tiny_data.y_train[:PROBE])
        np.testing.assert_array_equal(saved["index"], np.arange(PROBE) + 100)
        for key in WEIGHT_HISTORY_KEYS:
            assert saved[key].shape == (2, PROBE), key
        for key in ("weight", "weight_clean", "weight_adv"):
            # Normalised over the probe set (across the batches of 5): mean 1, as
            # inspect_weights shows them.
            np.testing.assert_allclose(saved[key].mean(axis=1), 1.0, rtol=1e-5)
            assert (saved[key] >= 0).all()
        # MWAT's default margin is the clean one: training's weight is the clean input's.
        np.testing.assert_allclose(saved["weight"], saved["weight_clean"], rtol=1e-5)
        assert not np.allclose(saved["weight_clean"], saved["weight_adv"])
        for key in ("margin_clean", "margin_adv"):
            assert (np.abs(saved[key]) <= 1.0 + 1e-6).all()
        # The last row is the trained model's clean predictions of the probe.
        logits = model.classifier.predict(tiny_data.x_train[:PROBE], verbose=0)
        np.testing.assert_array_equal(saved["pred_clean"][1], logits.argmax(axis=1))
        # The adversarial examples are no better classified than the clean inputs, and their
        # margins are no larger (PGD ascends the loss from the clean point).
        assert saved["margin_adv"].mean() <= saved["margin_clean"].mean()


def test_recording_changes_no_training_number(recorded):
    _, with_callback, without, _ = recorded
    for mine, theirs in zip(with_callback.get_weights(), without.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_a_resumed_run_appends_and_a_repeated_epoch_replaces(recorded, tiny_data):
    path, model, _, _ = recorded
    with np.load(path) as saved:
        before = {key: saved[key].copy() for key in saved.files}
    x, y = tiny_data.x_train[:PROBE], tiny_data.y_train[:PROBE]
    index = np.arange(PROBE) + 100
    # As after BackupAndRestore: fit continues at epoch 2 with a new callback object.
    model.fit(*tiny_data.train, batch_size=32, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[WeightHistory(x, y, path, index=index, batch_size=5)])
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["epoch"], [0, 1, 2])
        for key in WEIGHT_HISTORY_KEYS:
            assert saved[key].shape == (3, PROBE)
            np.testing.assert_array_equal(saved[key][:2], before[key])
    # Epoch 2 once more (a run cut off after the record, before the backup): replaced.
    model.fit(*tiny_data.train, batch_size=32, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[WeightHistory(x, y, path, index=index, batch_size=5)])
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["epoch"], [0, 1, 2])
        np.testing.assert_array_equal(saved["weight"][:2], before["weight"])


def test_another_probe_set_or_bad_arguments_are_refused(recorded, tiny_data):
    path, model, _, _ = recorded
    other = WeightHistory(tiny_data.x_train[:5], tiny_data.y_train[:5], path)
    other.set_model(model)
    with pytest.raises(ValueError, match="another probe set"):
        other.on_train_begin()
    with pytest.raises(ValueError, match="same number"):
        WeightHistory(tiny_data.x_train[:5], tiny_data.y_train[:4], path)
    with pytest.raises(ValueError, match="every"):
        WeightHistory(tiny_data.x_train[:5], tiny_data.y_train[:5], path, every=0)
    with pytest.raises(ValueError, match="index"):
        WeightHistory(tiny_data.x_train[:5], tiny_data.y_train[:5], path, index=[1, 2])


def test_uniform_methods_record_weight_one(tiny_data, tmp_path):
    model = km.PGDATModel(km.zoo.small_cnn(width=4),
                          attack=km.attacks.PGD(eps=0.1, step_size=0.05, num_steps=1), seed=0)
    model.compile(optimizer="sgd")
    path = tmp_path / "h.npz"
    model.fit(*tiny_data.train, batch_size=32, epochs=1, verbose=0,
              callbacks=[WeightHistory(tiny_data.x_train[:6], tiny_data.y_train[:6], path)])
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["weight_adv"], np.ones((1, 6)))
