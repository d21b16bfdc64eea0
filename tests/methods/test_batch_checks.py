"""Every batch is checked inside the graph: a bad later batch stops fit / evaluate with a
ValueError naming the problem, the value seen and the step, before that step's update."""

import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat import validation
from tests.methods.helpers import deterministic_attack, make_cnn, meta_set, weights_of

ROOT = Path(__file__).parents[2]
BATCH = 16


def _model(name="pgd_at", **compile_kwargs):
    if name == "mwat":
        model = km.MWATModel(make_cnn(), attack=deterministic_attack(1), seed=0,
                             meta_data=meta_set())
    else:
        model = km.PGDATModel(make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05), **compile_kwargs)
    return model


def _data(tiny_data, n=64):
    return tiny_data.x_train[:n].copy(), tiny_data.y_train[:n].copy()


def _dataset(*arrays):
    return tf.data.Dataset.from_tensor_slices(tuple(arrays)).batch(BATCH)


class RecordWeights(keras.callbacks.Callback):
    """The model's weights at the start and after each batch; the classifier's after each
    epoch (the model's own epoch counter moves at the next epoch's start)."""

    def __init__(self):
        super().__init__()
        self.after_batch, self.after_epoch, self.at_start = [], [], None

    def on_train_begin(self, logs=None):
        self.at_start = weights_of(self.model)
        self.classifier_at_start = weights_of(self.model.classifier)

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append(weights_of(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.after_epoch.append(weights_of(self.model.classifier))


def _assert_same(weights, expected):
    assert len(weights) == len(expected)
    for a, b in zip(weights, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["pgd_at", "mwat"])
def test_nan_in_batch_3_names_nan_and_the_step(name, tiny_data):
    x, y = _data(tiny_data)
    x[2 * BATCH + 5, 3, 4, 0] = np.nan  # batch 3: the eager first-batch check cannot see it
    model = _model(name)
    with pytest.raises(ValueError, match=r"^keras-mwat batch check failed in training step 3 "
                                         r"\(epoch 1\): the inputs `x` contain 1 NaN"):
        model.fit(_dataset(x, y), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2  # steps 1 and 2 ran, step 3 did not


@pytest.mark.parametrize("name", ["pgd_at", "mwat"])
def test_pixels_in_0_255_from_batch_2_name_value_range_and_max(name, tiny_data):
    x, y = _data(tiny_data)
    x[BATCH:] *= 255.0
    assert x[BATCH:2 * BATCH].max() == 255.0 and x[BATCH:2 * BATCH].min() == 0.0
    model = _model(name)
    with pytest.raises(ValueError, match=r"training step 2 .*values in \[0, 255\], outside "
                                         r"value_range=\(0, 1\)"):
        model.fit(_dataset(x, y), epochs=1, verbose=0)


def test_label_10_in_a_later_batch_names_label_and_num_classes(tiny_data):
    x, y = _data(tiny_data)
    y[3 * BATCH + 1] = 10
    with pytest.raises(ValueError, match=r"training step 4 .*label 10, outside \[0, 9\] for "
                                         r"a classifier with num_classes=10"):
        _model().fit(_dataset(x, y), epochs=1, verbose=0)


def test_negative_labels_and_non_integer_labels(tiny_data):
    x, y = _data(tiny_data)
    y = y.astype("int64")
    y[BATCH + 2] = -3
    with pytest.raises(ValueError, match=r"training step 2 .*label -3"):
        _model().fit(_dataset(x, y), epochs=1, verbose=0)
    floats = tiny_data.y_train[:64].astype("float32")
    floats[BATCH + 2] = 2.5
    with pytest.raises(ValueError, match=r"training step 2 .*hold 2.5, not an integer"):
        _model().fit(_dataset(x, floats), epochs=1, verbose=0)


def test_bad_sample_weights(tiny_data):
    x, y = _data(tiny_data)
    w = np.ones(len(y), "float32")
    w[BATCH + 1] = -0.5
    with pytest.raises(ValueError, match=r"training step 2 .*`sample_weight` has the negative "
                                         r"value -0.5"):
        _model().fit(_dataset(x, y, w), epochs=1, verbose=0)
    w[BATCH + 1] = np.inf
    with pytest.raises(ValueError, match=r"training step 2 .*`sample_weight` contains 1 NaN"):
        _model().fit(_dataset(x, y, w), epochs=1, verbose=0)


def test_good_batches_pass(tiny_data):
    """No false alarm: float integer labels, one-hot labels and sample weights train."""
    x, y = _data(tiny_data)
    w = np.linspace(0.0, 2.0, len(y)).astype("float32")
    model = _model()
    model.fit(_dataset(x, y.astype("float32"), w), epochs=1, verbose=0)
    model.fit(_dataset(x, np.eye(10, dtype="float32")[y]), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 8


def test_the_switch_turns_the_checks_off(tiny_data):
    x, y = _data(tiny_data)
    x[BATCH:] *= 255.0
    model = _model(check_batches=False)
    model.fit(_dataset(x, y), epochs=1, verbose=0)  # what the checks prevent: silent training
    assert int(model.optimizer.iterations.numpy()) == 4
    y[3 * BATCH] = 10  # unchecked, a bad label reaches TensorFlow's own raw error
    with pytest.raises(tf.errors.InvalidArgumentError, match="label value of 10"):
        model.fit(_dataset(x / 255.0, y), epochs=1, verbose=0)
    assert model.get_compile_config()["check_batches"] is False
    assert _model().get_compile_config()["check_batches"] is True


def test_the_switch_survives_saving(tiny_data, tmp_path):
    model = _model(check_batches=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.check_batches is False


def test_the_failing_step_changes_no_weight(tiny_data):
    x, y = _data(tiny_data)
    x[2 * BATCH] = np.inf
    model = _model()
    record = RecordWeights()
    with pytest.raises(ValueError, match="training step 3"):
        model.fit(_dataset(x, y), epochs=1, verbose=0, callbacks=[record])
    assert len(record.after_batch) == 2
    changed = max(np.abs(a - b).max() for a, b in zip(record.after_batch[1], record.at_start))
    assert changed > 0  # the steps before it did train
    _assert_same(weights_of(model), record.after_batch[1])
    assert all(np.isfinite(w).all() for w in weights_of(model))


def test_backup_and_restore_keeps_the_last_good_epoch(tiny_data, tmp_path):
    x, y = _data(tiny_data)  # 4 batches per epoch, 2 epochs: the data twice
    x, y = np.concatenate([x, x]), np.concatenate([y, y])
    bad = x.copy()
    bad[4 * BATCH + 3] = np.nan  # the 5th batch: the first of epoch 2 (4 steps per epoch)
    backup = tmp_path / "backup"
    model = _model()
    record = RecordWeights()
    with pytest.raises(ValueError, match=r"training step 5 \(epoch 2\).*NaN"):
        model.fit(_dataset(bad, y), epochs=2, steps_per_epoch=4, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), record])
    assert len(record.after_epoch) == 1
    _assert_same(weights_of(model.classifier), record.after_epoch[0])  # nothing is lost
    assert any(backup.iterdir())  # the backup of epoch 1 is kept
    # A new run (fixed data) resumes from that backup: epoch 2 only, from epoch 1's weights.
    resumed = _model()
    again = RecordWeights()
    history = resumed.fit(_dataset(x[4 * BATCH:], y[4 * BATCH:]), epochs=2, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(backup), again]).history
    assert len(history["loss"]) == 1
    _assert_same(again.classifier_at_start, record.after_epoch[0])


def test_evaluate_checks_every_batch(tiny_data):
    x, y = _data(tiny_data)
    y[BATCH + 4] = 10
    model = _model()
    with pytest.raises(ValueError, match=r"^keras-mwat batch check failed in evaluation batch "
                                         r"2 .*label 10"):
        model.evaluate(_dataset(x, y), verbose=0)
    y[BATCH + 4] = 0
    x[3 * BATCH] = np.nan
    with pytest.raises(ValueError, match=r"evaluation batch 4 .*NaN"):
        model.fit(_dataset(x[:BATCH], y[:BATCH]), validation_data=_dataset(x, y), verbose=0)
    assert _model(check_batches=False).evaluate(_dataset(x[:BATCH], y[:BATCH]), verbose=0)


def test_xla_checks_the_dataset_batches(tiny_data):
    """XLA compiles asserts away: under jit_compile=True the pipeline checks the batches."""
    x, y = _data(tiny_data)
    x[2 * BATCH + 1] = np.nan
    model = _model(jit_compile=True)
    assert model.jit_compile is True
    with pytest.raises(ValueError, match=r"training dataset batch 3: .*NaN"):
        model.fit(_dataset(x, y), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    with pytest.raises(ValueError, match=r"evaluation dataset batch 3: .*NaN"):
        model.evaluate(_dataset(x, y), verbose=0)


def test_mixed_precision(tiny_data):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _data(tiny_data)
        x[BATCH:] *= 255.0
        model = _model()
        with pytest.raises(ValueError, match=r"training step 2 .*\[0, 255\]"):
            model.fit(_dataset(x.astype("float16"), y), epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.integration
def test_under_mirrored_strategy(tmp_path):
    """Two virtual CPUs: the check runs in replica context and the error stays readable."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, keras_mwat as km
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(64, 6)).astype("float32")
        y = rng.integers(0, 3, size=64)
        y[40] = 7
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            clf = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
            model = km.PGDATModel(clf, attack=km.attacks.PGD(
                eps=0.1, step_size=0.05, num_steps=1, random_start=False), seed=0)
            model.compile(optimizer="sgd")
        try:
            model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), verbose=0)
        except ValueError as error:
            print("CAUGHT", error)
    """)
    env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CAUGHT keras-mwat batch check failed in training step 3" in run.stdout
    assert "label 7, outside [0, 2]" in run.stdout


def test_batch_check_message_extraction():
    text = ("Graph execution error:\n\nDetected at node Assert ...\nassertion failed: "
            f"[{validation.BATCH_CHECK_PREFIX} in training step 3: it\\'s bad "
            f"({validation.BATCH_CHECK_SUFFIX}]\n\t [[{{node Assert}}]]")
    message = validation.batch_check_message(text)
    assert message == (f"{validation.BATCH_CHECK_PREFIX} in training step 3: it's bad "
                       f"({validation.BATCH_CHECK_SUFFIX}")
    assert validation.batch_check_message("Graph execution error: something else") is None


def test_check_batch_in_graph_eagerly():
    x = tf.constant([[0.0, 0.5], [1.0, 0.25]])
    y = tf.constant([0, 2])
    out = validation.check_batch_in_graph(x, y, num_classes=3, value_range=(0.0, 1.0))
    np.testing.assert_array_equal(out[0].numpy(), x.numpy())
    np.testing.assert_array_equal(out[1].numpy(), y.numpy())
    assert out[2] is None
    with pytest.raises(tf.errors.InvalidArgumentError, match="label 3, outside"):
        validation.check_batch_in_graph(x, tf.constant([0, 3]), num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]"):
        validation.check_batch_in_graph(x, y, num_classes=3, value_range=(0.0, 0.9))
    # No range: any finite values pass.
    validation.check_batch_in_graph(x * 100.0, y, num_classes=3, value_range=None)
