"""EpsilonWarmup: the attack radius ramps linearly, batch by batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods.helpers import deterministic_attack, make_cnn, method_kwargs


class RecordStrength(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(self.model.attack_strength.numpy()))


def test_warmup_ramps_strength_linearly(tiny_data):
    model = km.PGDATModel(make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer="sgd")
    record = RecordStrength()
    model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=16, epochs=3,
              callbacks=[km.callbacks.EpsilonWarmup(epochs=2), record], verbose=0)
    expected = [min((i + 1) / 8, 1.0) for i in range(12)]
    np.testing.assert_allclose(record.values, expected, rtol=1e-6)
    assert float(model.attack_strength.numpy()) == 1.0


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_strength_scales_the_radius(strength, tiny_data):
    attack = km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=3, value_range=None)
    classifier = make_cnn()
    x = tf.constant(tiny_data.x_train[:8])
    y = tf.constant(tiny_data.y_train[:8])
    x_adv = attack.scaled(tf.constant(strength)).perturb(
        lambda z: classifier(z, training=False), x, y)
    distance = np.abs(x_adv.numpy() - x.numpy()).max()
    assert distance <= 0.3 * strength + 1e-6
    if strength > 0:
        assert distance > 0.3 * strength - 1e-3  # sign steps reach the (scaled) boundary


def test_robust_validation_keeps_and_restores_the_best(tiny_data, tmp_path):
    model = km.PGDATModel(make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    attack = km.attacks.PGD(eps=0.1, step_size=0.05, num_steps=3, random_start=False)
    best = km.callbacks.RobustValidation(tiny_data.x_val, tiny_data.y_val, attack=attack,
                                         every=2, filepath=tmp_path / "best.keras")
    history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=5,
                        callbacks=[best], verbose=0).history
    assert [h["epoch"] for h in best.history] == [1, 3, 4]  # every 2, and the last epoch
    assert len(history["robust_val_accuracy"]) == 3
    robust = [h["robust"] for h in best.history]
    assert best.best_robust_accuracy == max(robust)
    assert best.best_epoch == best.history[int(np.argmax(robust))]["epoch"]
    # The restored weights are the best epoch's: their robust accuracy is the best one.
    assert best._accuracies()[1] == pytest.approx(best.best_robust_accuracy)
    loaded = keras.models.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(loaded.predict(tiny_data.x_val, verbose=0),
                               model.predict(tiny_data.x_val, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", ["mwat", "gairat", "pgd_at"])
def test_weight_tensorboard_writes_histograms_and_the_curve(name, tiny_data, tmp_path):
    model = km.METHODS[name](**method_kwargs(name), classifier=make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer="adam")
    board = km.callbacks.WeightTensorBoard(tmp_path, tiny_data.x_val, tiny_data.y_val, bins=4)
    model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32, epochs=2,
              callbacks=[board], verbose=0)
    tags = set()
    for path in (tmp_path / "weights").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"weights", "margins", "weight_vs_margin"} <= tags
    assert any(tag.startswith("class_mean_weight/") for tag in tags)
    rows = board.curves[-1]["curve"]
    assert sum(count for *_, count in rows) == len(tiny_data.y_val)
    inspected = model.inspect_weights(tiny_data.x_val, tiny_data.y_val)
    assert inspected["weight"].mean() == pytest.approx(1.0, rel=1e-5)  # mean-normalised
    if name == "pgd_at":
        np.testing.assert_allclose(inspected["weight"], 1.0)
    else:
        assert inspected["weight"].std() > 0


def test_robust_validation_resumes_its_best_checkpoint(tiny_data, tmp_path):
    """A run continued by BackupAndRestore keeps the best checkpoint of its earlier part."""
    model = km.PGDATModel(make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer="adam")
    path = tmp_path / "best.keras"
    first = km.callbacks.RobustValidation(tiny_data.x_val, tiny_data.y_val, filepath=path,
                                          restore_best_weights=False)
    model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], epochs=1, verbose=0,
              callbacks=[first])
    assert first.best_epoch == 0 and path.exists()
    resumed = km.callbacks.RobustValidation(tiny_data.x_val, tiny_data.y_val, filepath=path)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.best_epoch == 0
    assert resumed.best_robust_accuracy == pytest.approx(first.best_robust_accuracy)
    for a, b in zip(resumed.best_weights, first.best_weights):
        np.testing.assert_array_equal(a, b)


def _epochs(monitor, values, key="accuracy"):
    for epoch, value in enumerate(values):
        monitor.on_epoch_end(epoch, {key: value, "loss": 2.3})


def test_collapse_monitor_warns_once_when_accuracy_sits_at_chance(capsys):
    monitor = km.callbacks.CollapseMonitor(num_classes=10)
    with pytest.warns(km.callbacks.TrainingCollapseWarning,
                      match=r"accuracy 0\.110 after epoch 2 is at chance.*"
                            r"EpsilonWarmup\(epochs=3\).*--eps-warmup-epochs 3.*lower learning"):
        _epochs(monitor, [0.102, 0.11])
    assert monitor.triggered_epoch == 1
    assert "Training collapse" in capsys.readouterr().out
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _epochs(monitor, [0.1, 0.1, 0.1])  # once only


@pytest.mark.parametrize("values, key", [
    ([0.1, 0.35, 0.6], "accuracy"),      # a learning model
    ([0.1, 0.4, 0.1], "accuracy"),       # chance twice, but not in a row
    ([0.1], "accuracy"),                 # fewer epochs than `patience`
    ([0.45, 0.55, 0.7], "accuracy"),     # above 1/K + tolerance from the start
    ([0.1, 0.1, 0.1], "robust_accuracy"),  # not a monitored log
])
def test_collapse_monitor_stays_quiet(values, key):
    import warnings

    monitor = km.callbacks.CollapseMonitor(num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _epochs(monitor, values, key)
    assert monitor.message is None and monitor.triggered_epoch is None


def test_collapse_monitor_watches_validation_accuracy_and_patience():
    monitor = km.callbacks.CollapseMonitor(patience=3, tolerance=0.02, num_classes=4)
    for epoch in range(2):
        monitor.on_epoch_end(epoch, {"accuracy": 0.9, "val_accuracy": 0.26})
    assert monitor.message is None  # 2 epochs < patience 3
    with pytest.warns(km.callbacks.TrainingCollapseWarning, match=r"val_accuracy 0\.260 .*1/4"):
        monitor.on_epoch_end(2, {"accuracy": 0.9, "val_accuracy": 0.26})
    with pytest.raises(ValueError, match="patience"):
        km.callbacks.CollapseMonitor(patience=0)
    with pytest.raises(ValueError, match="num_classes"):
        km.callbacks.CollapseMonitor(num_classes=1)


def test_collapse_monitor_tells_a_divergence_from_a_run_that_never_learned():
    # The shape of the Table 1 GAIRAT run: learned to 0.66, then constant output.
    diverged = km.callbacks.CollapseMonitor(num_classes=10)
    with pytest.warns(km.callbacks.TrainingCollapseWarning,
                      match=r"had learned \(accuracy 0\.660 before\), so training diverged"):
        _epochs(diverged, [0.64, 0.66, 0.50, 0.10, 0.10], "accuracy")
    assert diverged.triggered_epoch == 4
    never = km.callbacks.CollapseMonitor(num_classes=10)
    with pytest.warns(km.callbacks.TrainingCollapseWarning, match="EpsilonWarmup"):
        _epochs(never, [0.12, 0.10, 0.11], "accuracy")
    assert "diverged" not in never.message


def test_collapse_monitor_in_fit_reads_the_model():
    """A model that cannot learn (zero logits, learning rate 0) predicts class 0: accuracy
    is exactly the share of class 0, 1/10 on balanced labels."""
    classifier = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(10, kernel_initializer="zeros")])
    model = km.PGDATModel(classifier, attack=deterministic_attack(1), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x = np.random.default_rng(0).uniform(size=(40, 28, 28, 1)).astype("float32")
    y = np.arange(40) % 10
    monitor = km.callbacks.CollapseMonitor()
    with pytest.warns(km.callbacks.TrainingCollapseWarning, match=r"learning rate 0\b"):
        model.fit(x, y, batch_size=20, epochs=3, callbacks=[monitor], verbose=0)
    assert monitor.triggered_epoch == 1
