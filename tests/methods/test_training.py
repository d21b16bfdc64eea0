"""The shared train_step: BatchNorm updates, equivalences, determinism, weight-net learning."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods.helpers import (
    clone,
    deterministic_attack,
    make_cnn,
    meta_set,
    method_kwargs,
    recorded_step,
    weights_of,
)


def sgd():
    return keras.optimizers.SGD(0.05, momentum=0.9)


@pytest.mark.parametrize("model_class", [km.MWATModel, km.PGDATModel])
def test_exactly_one_batchnorm_update_per_step(model_class, tiny_data):
    classifier = make_cnn(batch_norm=True)
    attack = deterministic_attack()
    x, y = tiny_data.x_train[:32], tiny_data.y_train[:32]
    # Expected statistics: one training-mode forward on x_adv from the initial weights.
    x_adv = attack.perturb(lambda z: classifier(z, training=False), tf.constant(x),
                           tf.constant(y))
    theta = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    _, expected = classifier.stateless_call(theta, non_trainable, x_adv, training=True)

    model = model_class(classifier, attack=attack, seed=0, **method_kwargs(model_class))
    model.compile(optimizer=sgd())
    model.train_on_batch(x, y)
    for variable, value in zip(classifier.non_trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
    # ... and it did move away from the initial statistics.
    moved = [np.abs(v.numpy() - n.numpy()).max()
             for v, n in zip(classifier.non_trainable_variables, non_trainable)]
    assert max(moved) > 1e-4


@pytest.mark.parametrize("factory", [
    lambda c, a: km.TRADESModel(c, attack=a, seed=2),
    lambda c, a: km.MARTModel(c, attack=a, seed=2),
    lambda c, a: km.MWATModel(meta_data=meta_set(), classifier=c, attack=a, seed=2, base="trades"),
])
def test_shared_clean_forward_trains_as_two_separate_ones(factory, tiny_data):
    """On a classifier without training-dependent layers, the recorded clean forward also
    gives the attack's and the metrics' clean logits: same update as a separate inference
    forward, to float tolerance."""
    base = make_cnn()
    results = []
    for shared in (True, False):
        keras.utils.set_random_seed(0)  # the same weight-network initialisation (MWAT)
        model = factory(clone(base), deterministic_attack())
        assert model.shares_clean_forward  # the small CNN has no BatchNorm or Dropout
        model.shares_clean_forward = shared
        model.compile(optimizer=sgd())
        # One step: MWAT's Adam meta step turns float round-off in its (tiny, at
        # initialisation) hypergradient into lr-sized differences on later steps.
        logs = model.train_on_batch(tiny_data.x_train[:32], tiny_data.y_train[:32],
                                    return_dict=True)
        trained = [model.classifier] + ([model.weight_net] if hasattr(model, "weight_net")
                                        else [])
        results.append((sum((weights_of(m) for m in trained), []), logs))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in ("loss", "accuracy", "robust_accuracy"):
        np.testing.assert_allclose(results[0][1][name], results[1][1][name], rtol=1e-5)
    assert not factory(make_cnn(batch_norm=True), deterministic_attack()).shares_clean_forward


def test_mwat_equals_pgd_at_before_reweighting_starts(tiny_data):
    base = make_cnn()
    results = []
    for model in (km.PGDATModel(clone(base), attack=deterministic_attack(), seed=1),
                  km.MWATModel(meta_data=meta_set(), classifier=clone(base), attack=deterministic_attack(), seed=1,
                               reweight_start_epoch=5, weight_normalization="mean")):
        model.compile(optimizer=sgd())
        history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=2,
                            shuffle=False, verbose=0)
        results.append((weights_of(model.classifier), history.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[0][1]["loss"], results[1][1]["loss"], rtol=1e-6)
    assert results[1][1]["mean_weight"] == pytest.approx([1.0, 1.0])
    assert results[1][1]["weight_std"] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_same_seed_twice_gives_identical_weights(tiny_data):
    runs = []
    for _ in range(2):
        classifier = make_cnn(seed=5)
        model = km.MWATModel(meta_data=meta_set(), classifier=classifier, attack=km.attacks.PGD(eps=0.3, step_size=0.1,
                                                              num_steps=2), seed=5)
        model.compile(optimizer=sgd())
        model.fit(tiny_data.train_dataset(batch_size=32, seed=5), epochs=1, verbose=0)
        runs.append(weights_of(model.classifier) + weights_of(model.weight_net))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_weight_network_learns_during_fit(tiny_data):
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(), seed=0)
    model.compile(optimizer=sgd())
    before = weights_of(model.weight_net)
    history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=1,
                        verbose=0)
    after = weights_of(model.weight_net)
    change = max(np.abs(a - b).max() for a, b in zip(before, after))
    assert np.isfinite(change) and change > 0
    logs = history.history
    for key in ("loss", "accuracy", "robust_accuracy", "mean_weight", "weight_std",
                "meta_loss"):
        assert key in logs and np.isfinite(logs[key][-1]), key
    assert logs["mean_weight"][-1] == pytest.approx(1 / 32, rel=1e-5)  # sum 1 per batch
    assert logs["weight_std"][-1] > 0


def test_weight_network_gradient_is_finite_and_nonzero(tiny_data):
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(), seed=0)
    model.compile(optimizer=sgd())
    x = tf.constant(tiny_data.x_train[:32])
    y = tf.constant(tiny_data.y_train[:32].astype("int32"))
    step = recorded_step(model, x, y)
    features = km.margins.multiclass_margin(y, step.logits_adv)
    meta_loss, grads = model.hypergradient(step, features)
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    assert np.isfinite(meta_loss.numpy()) and np.all(np.isfinite(flat))
    assert np.abs(flat).max() > 0


@pytest.mark.parametrize("options", [
    {"margin": "scalar"}, {"margin": "sorted"}, {"margin": "logit"},
    {"meta_source": "split"}, {"meta_objective": "both"}, {"meta_objective": "clean"},
    {"weight_normalization": "mean"}, {"weight_normalization": "none"},
    {"meta_update_every": 2}, {"inner_lr": 0.1}, {"margin_source": "adversarial"},
    {"margin": "multiclass_onehot"}, {"meta_source": "batch"},
    {"meta_attack_model": "current"}, {"base": "trades"},
])
def test_every_option_trains(options, tiny_data):
    meta = {} if "meta_source" in options else {"meta_data": meta_set()}
    model = km.MWATModel(make_cnn(), attack=deterministic_attack(1), seed=0, **meta, **options)
    model.compile(optimizer=sgd())
    history = model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32,
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    # The weights multiplying the loss: sum 1 by default (the paper's), mean 1 for "mean".
    expected = 1.0 if options.get("weight_normalization") == "mean" else 1 / 32
    if options.get("weight_normalization") != "none":
        assert history.history["mean_weight"][-1] == pytest.approx(expected, rel=1e-4)


def test_meta_dataset_sources(tiny_data):
    meta = (tiny_data.x_val, tiny_data.y_val)
    for meta_data in (meta, tf.data.Dataset.from_tensor_slices(meta).batch(16)):
        model = km.MWATModel(make_cnn(), attack=deterministic_attack(1), seed=0,
                             meta_source="dataset", meta_data=meta_data, meta_batch_size=16)
        model.compile(optimizer=sgd())
        history = model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32,
                            epochs=1, verbose=0)
        assert history.history["meta_loss"][-1] > 0


def test_reweighting_changes_the_update(tiny_data):
    """With the warm-up over, MWAT's update differs from PGD-AT's."""
    base = make_cnn()
    finals = []
    for model in (km.PGDATModel(clone(base), attack=deterministic_attack(), seed=1),
                  km.MWATModel(meta_data=meta_set(), classifier=clone(base), attack=deterministic_attack(), seed=1)):
        model.compile(optimizer=sgd())
        model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32, epochs=1,
                  shuffle=False, verbose=0)
        finals.append(weights_of(model.classifier))
    assert max(np.abs(a - b).max() for a, b in zip(*finals)) > 1e-6


def test_evaluate_reports_clean_and_robust_accuracy(tiny_data):
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(), seed=0)
    model.compile(optimizer=sgd())
    result = model.evaluate(tiny_data.x_test, tiny_data.y_test, return_dict=True, verbose=0)
    assert set(result) == {"loss", "accuracy", "robust_accuracy"}
    assert result["robust_accuracy"] <= result["accuracy"] + 1e-6
    history = model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32,
                        validation_data=(tiny_data.x_val, tiny_data.y_val), epochs=1,
                        verbose=0)
    assert "val_robust_accuracy" in history.history


def test_one_hot_labels_are_accepted(tiny_data):
    model = km.PGDATModel(make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer=sgd())
    one_hot = np.eye(10, dtype="float32")[tiny_data.y_train[:32]]
    logs = model.train_on_batch(tiny_data.x_train[:32], one_hot, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_reweight_start_epoch_counts_from_zero(tiny_data):
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(1), seed=0,
                         reweight_start_epoch=1)
    model.compile(optimizer=sgd())
    history = model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=32,
                        epochs=2, verbose=0).history
    assert history["weight_std"][0] == pytest.approx(0.0, abs=1e-7)
    assert history["meta_loss"][0] == 0.0
    assert history["weight_std"][1] > 0 and history["meta_loss"][1] > 0


def test_meta_update_every_skips_the_look_ahead_on_other_steps(tiny_data):
    """With meta_update_every=3 the weight network moves on steps 0 and 3 only, and the
    meta loss averages over those steps alone."""
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(1), seed=0,
                         meta_update_every=3)
    model.compile(optimizer=sgd())
    snapshots, meta_losses = [weights_of(model.weight_net)], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append(weights_of(model.weight_net))
            meta_losses.append(logs["meta_loss"])

    model.fit(tiny_data.x_train[:64], tiny_data.y_train[:64], batch_size=16, epochs=1,
              shuffle=False, callbacks=[Record()], verbose=0)
    moved = [max(np.abs(a - b).max() for a, b in zip(before, after)) > 0
             for before, after in zip(snapshots, snapshots[1:])]
    assert moved == [True, False, False, True]
    assert model.meta_optimizer.iterations.numpy() == 2
    # Steps without an update leave the running mean of the meta loss unchanged.
    assert meta_losses[0] > 0
    assert meta_losses[1] == pytest.approx(meta_losses[0])
    assert meta_losses[2] == pytest.approx(meta_losses[0])
