"""Every method trains through the one train_step, logs its metrics and round-trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat.methods.base import TrainingStep
from tests.methods.helpers import make_cnn, meta_set, method_kwargs

ATTACK = dict(eps=0.3, step_size=0.1, num_steps=2)


@pytest.mark.parametrize("name", sorted(km.METHODS))
def test_each_method_trains_and_round_trips(name, tiny_data, tmp_path):
    model = km.METHODS[name](**method_kwargs(name), classifier=make_cnn(), attack=km.attacks.PGD(**ATTACK), seed=0)
    model.compile(optimizer="adam")
    # Keras's own callbacks work unchanged with every method.
    callbacks = [
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.EarlyStopping(monitor="val_robust_accuracy", mode="max", patience=3),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"),
                                        monitor="val_robust_accuracy", mode="max",
                                        save_best_only=True),
    ]
    history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=1,
                        validation_data=(tiny_data.x_val, tiny_data.y_val),
                        callbacks=callbacks, verbose=0).history
    expected = {"loss", "accuracy", "robust_accuracy", "mean_weight", "weight_std"}
    if issubclass(km.METHODS[name], km.MWATModel):
        expected.add("meta_loss")
    expected |= {"val_loss", "val_accuracy", "val_robust_accuracy"}
    assert set(history) == expected
    assert "val_robust_accuracy" in (tmp_path / "log.csv").read_text().splitlines()[0]
    assert (tmp_path / "best.keras").exists()
    assert all(np.isfinite(values[-1]) for values in history.values())
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    def options(m):  # the networks are compared by their weights and predictions below
        return {k: v for k, v in m.get_config().items()
                if k not in ("classifier", "weight_net")}

    assert options(loaded) == options(model)
    if hasattr(model, "weight_net"):
        for a, b in zip(loaded.weight_net.get_weights(), model.weight_net.get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(tiny_data.x_test, verbose=0),
                                  model.predict(tiny_data.x_test, verbose=0))


def _trained_classifier(tiny_data):
    classifier = make_cnn()
    classifier.compile(optimizer=keras.optimizers.Adam(3e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(tiny_data.x_train, tiny_data.y_train, epochs=15, batch_size=32, verbose=0)
    return classifier


def test_trades_attack_increases_the_kl_over_its_start(tiny_data):
    classifier = _trained_classifier(tiny_data)
    model = km.TRADESModel(classifier, attack=km.attacks.PGD(eps=0.3, step_size=0.05,
                                                             num_steps=10), seed=0)
    x = tf.constant(tiny_data.x_train[:64])
    y = tf.constant(tiny_data.y_train[:64].astype("int32"))
    logits_clean = classifier(x, training=False)
    start = model.attack.with_init("normal").scaled(tf.constant(1e-9)).perturb(
        model.classifier_fn(), x, y, seed=0,
        loss_fn=model.attack_loss(x, y, logits_clean))  # (almost) no step: the start
    x_adv, _ = model._attack(x, y, logits_clean, model.train_seed)
    kl_start = km.losses.kl(logits_clean, classifier(start, training=False)).numpy()
    kl_adv = km.losses.kl(logits_clean, classifier(x_adv, training=False)).numpy()
    assert np.abs(start.numpy() - x.numpy()).max() < 0.01  # 0.001 N(0, 1) start
    assert kl_adv.mean() > 10 * max(kl_start.mean(), 1e-6)
    assert np.mean(kl_adv > kl_start) > 0.9


def _step(model, tiny_data, n=16):
    x = tf.constant(tiny_data.x_train[:n])
    y = tf.constant(tiny_data.y_train[:n].astype("int32"))
    logits_clean = model.classifier(x, training=False)
    step = TrainingStep(x=x, y=y, x_adv=x, logits_clean=logits_clean)
    step.logits_adv = model.classifier(x + 0.1, training=True)
    step.logits_natural = model.classifier(x, training=True)
    return step


def test_trades_and_mwat_trades_weight_only_the_kl_term(tiny_data):
    for model in (km.TRADESModel(make_cnn(), beta=3.0),
                  km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), base="trades", beta=3.0),
                  km.MAILModel(make_cnn(), base="trades", beta=3.0)):
        step = _step(model, tiny_data)
        weighted, unweighted = model.sample_losses(step)
        np.testing.assert_allclose(
            weighted, 3.0 * km.losses.kl(step.logits_natural, step.logits_adv), rtol=1e-6)
        np.testing.assert_allclose(
            unweighted, km.losses.cross_entropy(step.y, step.logits_natural), rtol=1e-6)


def test_mart_and_at_losses(tiny_data):
    mart = km.MARTModel(make_cnn(), beta=5.0)
    step = _step(mart, tiny_data)
    weighted, unweighted = mart.sample_losses(step)
    assert unweighted is None
    np.testing.assert_allclose(
        weighted, km.losses.mart(step.y, step.logits_natural, step.logits_adv, beta=5.0),
        rtol=1e-6)
    pgd_at = km.PGDATModel(make_cnn())
    weighted, _ = pgd_at.sample_losses(step)
    np.testing.assert_allclose(weighted, km.losses.cross_entropy(step.y, step.logits_adv),
                               rtol=1e-6)


def test_heuristic_weights_are_the_functional_ones(tiny_data):
    step = _step(km.PGDATModel(make_cnn()), tiny_data)
    step.kappa = tf.constant(np.arange(16) % 3, tf.int32)
    cases = [
        (km.MAILModel(make_cnn(), bias=-0.5, slope=10.0),
         km.weighting.mail(step.y, step.logits_adv, bias=-0.5, slope=10.0), "none"),
        (km.GAIRATModel(make_cnn(), attack=km.attacks.PGD(num_steps=4), lam=0.5),
         km.weighting.gairat(step.kappa, 4, lam=0.5), "mean"),
        (km.WMMRModel(make_cnn(), alpha=2.0), km.weighting.wmmr(step.y, step.logits_adv, 2.0),
         "mean"),
    ]
    for model, expected, mode in cases:
        np.testing.assert_allclose(model.sample_weights(step), expected, rtol=1e-6)
        assert model.weight_normalization_mode() == mode


def test_gairat_warm_up_gives_uniform_weights(tiny_data):
    model = km.GAIRATModel(make_cnn(), attack=km.attacks.PGD(**ATTACK), seed=0,
                           reweight_start_epoch=1)
    model.compile(optimizer="adam")
    history = model.fit(tiny_data.x_train, tiny_data.y_train, batch_size=32, epochs=2,
                        verbose=0).history
    assert history["weight_std"][0] == pytest.approx(0.0, abs=1e-7)
    assert history["weight_std"][1] > 0


def test_mwn_weights_the_per_sample_loss(tiny_data):
    model = km.MWNModel(meta_data=meta_set(), classifier=make_cnn())
    assert model.meta_objective == "clean"
    assert model.weight_net.hidden_layers[0].kernel.shape[0] == 1
    step = _step(model, tiny_data)
    step.weighted_loss, _ = model.sample_losses(step)
    np.testing.assert_allclose(model.weight_features(step)[:, 0], step.weighted_loss)


@pytest.mark.parametrize("cls, kwargs, match", [
    (km.TRADESModel, {"beta": -1.0}, "beta"),
    (km.MAILModel, {"base": "mart"}, "base"),
    (km.MAILModel, {"slope": float("nan")}, "slope"),
    (km.GAIRATModel, {"lam": float("inf")}, "lam"),
    (km.WMMRModel, {"alpha": "big"}, "alpha"),
    (km.MWATModel, {"base": "kl"}, "base"),
])
def test_bad_hyperparameters(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(make_cnn(), **kwargs)
