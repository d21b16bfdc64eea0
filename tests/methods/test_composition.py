"""A method is an objective plus a weighting: the named methods are presets of
``AdversarialTrainingModel(objective=..., weighting=...)``, a user's own weighting or
objective trains through the same step, and DONE is one file."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods.helpers import deterministic_attack, make_cnn, recorded_step, weights_of

PAIRS = {
    "mail_trades": (lambda c, a: km.MAILModel(c, attack=a, base="trades", bias=0.0,
                                              slope=2.0),
                    dict(objective=km.objectives.TRADESObjective(6.0),
                         weighting=km.weightings.MAILWeighting(0.0, 2.0))),
    "gairat": (lambda c, a: km.GAIRATModel(c, attack=a, lam=-1.0),
               dict(weighting=km.weightings.GAIRATWeighting(-1.0))),
    "wmmr": (lambda c, a: km.WMMRModel(c, attack=a, alpha=0.5),
             dict(weighting=km.weightings.WMMRWeighting(0.5))),
    "mart": (lambda c, a: km.MARTModel(c, attack=a, beta=5.0),
             dict(objective=km.objectives.MARTObjective(5.0))),
    "done": (lambda c, a: km.DONEModel(c, attack=a, r=0.5),
             dict(weighting=km.methods.done.DONEWeighting(0.5))),
}


def _train(model, data):
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(data.x_train[:64], data.y_train[:64], batch_size=32, epochs=1, shuffle=False,
              verbose=0)
    return weights_of(model.classifier)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_named_method_is_a_preset_of_objective_and_weighting(name, tiny_data):
    make_named, parts = PAIRS[name]
    named = make_named(make_cnn(), deterministic_attack())
    generic = km.AdversarialTrainingModel(make_cnn(), attack=deterministic_attack(), **parts)
    for a, b in zip(_train(named, tiny_data), _train(generic, tiny_data), strict=True):
        np.testing.assert_array_equal(a, b)
    assert type(generic.weighting) is type(named.weighting)


class LossPower(km.weightings.Weighting):
    """The docs' user-defined weighting: weights grow with the adversarial loss."""

    def __init__(self, power=1.0):
        self.power = power

    def weights(self, step):
        return tf.pow(tf.stop_gradient(step.weighted_loss) + 1e-3, self.power)

    def get_config(self):
        return {"power": self.power}


def test_user_weighting_gives_the_weights_it_computes(tiny_data):
    model = km.AdversarialTrainingModel(make_cnn(), attack=deterministic_attack(),
                                        weighting=LossPower(2.0))
    x, y = tf.constant(tiny_data.x_train[:16]), tf.constant(tiny_data.y_train[:16])
    step = recorded_step(model, x, y)
    expected = (step.weighted_loss.numpy() + 1e-3) ** 2
    np.testing.assert_allclose(model.sample_weights(step), expected, rtol=1e-5)
    inspected = model.inspect_weights(x, y)["weight"]
    assert inspected.mean() == pytest.approx(1.0, rel=1e-5)  # mean-normalised
    # Training differs from uniform weights, and from PGD-AT's result.
    uniform = km.AdversarialTrainingModel(make_cnn(), attack=deterministic_attack())
    trained, plain = _train(model, tiny_data), _train(uniform, tiny_data)
    assert any(not np.array_equal(a, b) for a, b in zip(trained, plain, strict=True))
    pgd_at = km.PGDATModel(make_cnn(), attack=deterministic_attack())
    for a, b in zip(plain, _train(pgd_at, tiny_data), strict=True):
        np.testing.assert_array_equal(a, b)


def test_objective_terms_are_named_and_marked(tiny_data):
    model = km.TRADESModel(make_cnn(), attack=deterministic_attack(), beta=6.0)
    x, y = tf.constant(tiny_data.x_train[:8]), tf.constant(tiny_data.y_train[:8])
    step = recorded_step(model, x, y)
    terms = model.objective.loss_terms(model, step)
    assert [(t.name, t.weighted) for t in terms] == [("robust_kl", True),
                                                     ("natural_ce", False)]
    weighted, unweighted = model.objective.sample_losses(model, step)
    np.testing.assert_array_equal(weighted, terms[0].values)
    np.testing.assert_array_equal(unweighted, terms[1].values)

    class TwoWeighted(km.objectives.Objective):
        def loss_terms(self, model, step):
            return [km.objectives.LossTerm("a", tf.ones(3)),
                    km.objectives.LossTerm("b", 2 * tf.ones(3)),
                    km.objectives.LossTerm("c", 5 * tf.ones(3), weighted=False)]

    weighted, unweighted = TwoWeighted().sample_losses(model, step)
    np.testing.assert_array_equal(weighted, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(unweighted, [5.0, 5.0, 5.0])

    class NoWeighted(km.objectives.Objective):
        def loss_terms(self, model, step):
            return [km.objectives.LossTerm("c", tf.ones(3), weighted=False)]

    with pytest.raises(ValueError, match="no weighted loss term"):
        NoWeighted().sample_losses(model, step)


def test_generic_model_saves_and_loads_its_parts(tiny_data, tmp_path):
    model = km.AdversarialTrainingModel(
        make_cnn(), attack=deterministic_attack(), seed=3,
        objective=km.objectives.TRADESObjective(4.0),
        weighting=km.weightings.MAILWeighting(bias=-0.5, slope=10.0))
    _train(model, tiny_data)
    model.save(tmp_path / "generic.keras")
    loaded = keras.saving.load_model(tmp_path / "generic.keras")
    assert isinstance(loaded.objective, km.objectives.TRADESObjective)
    assert loaded.objective.beta == 4.0
    assert (loaded.weighting.bias, loaded.weighting.slope) == (-0.5, 10.0)
    x = tiny_data.x_test[:8]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # A named method's config keeps its own arguments, not the parts.
    assert "weighting" not in km.MAILModel(make_cnn()).get_config()


def test_bad_parts_are_refused_with_the_argument_named():
    with pytest.raises(TypeError, match="`weighting` must be"):
        km.AdversarialTrainingModel(make_cnn(), weighting="mail")
    with pytest.raises(TypeError, match="`objective` must be"):
        km.AdversarialTrainingModel(make_cnn(), objective="cw")
    with pytest.raises(TypeError, match="record a trace"):
        km.AdversarialTrainingModel(make_cnn(), attack=km.attacks.APGD(eps=0.1),
                                    weighting=km.weightings.GAIRATWeighting())


# ------------------------------------------------------------------------------ DONE
def _done_weights(loss, r):
    step = km.methods.TrainingStep(x=None, y=None, x_adv=None, logits_clean=None,
                                   weighted_loss=tf.constant(loss, tf.float32))
    raw = km.methods.done.DONEWeighting(r).weights(step)
    return km.weighting.normalize(raw, "sum").numpy()


def test_done_weights_are_the_kl_dro_closed_form():
    rng = np.random.default_rng(0)
    loss = rng.uniform(0.0, 3.0, size=12)
    r = 0.7
    w = _done_weights(loss, r)
    softmax = np.exp(loss / r) / np.exp(loss / r).sum()
    np.testing.assert_allclose(w, softmax, rtol=1e-5)

    # The optimum of max_w <w, l> - r KL(w || uniform) over the simplex: no random point of
    # the simplex (nor a vertex, nor uniform) does better.
    def objective(v):
        return v @ loss - r * np.sum(v * np.log(np.maximum(v, 1e-30) * len(v)))

    best = objective(w.astype(np.float64))
    candidates = [*rng.dirichlet(np.ones(12), size=2000), np.full(12, 1 / 12),
                  *np.eye(12)]
    assert all(objective(c) <= best + 1e-6 for c in candidates)
    # Larger loss, larger weight; r -> infinity: uniform; no overflow at small r.
    assert np.all(np.diff(w[np.argsort(loss)]) > 0)
    np.testing.assert_allclose(_done_weights(loss, 1e6), np.full(12, 1 / 12), rtol=1e-4)
    sharp = _done_weights(np.array([1000.0, 999.0, 0.0]), 0.01)
    assert np.all(np.isfinite(sharp)) and sharp[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="r"):
        km.DONEModel(make_cnn(), r=0.0)


def test_done_is_registered_by_one_line(tmp_path, tiny_data):
    from keras_mwat import registry

    assert registry.METHOD_CLASSES["done"] == "keras_mwat.methods.done:DONEModel"
    assert km.METHODS["done"] is km.DONEModel
    model = km.DONEModel(make_cnn(), attack=deterministic_attack(), r=2.0, seed=0)
    _train(model, tiny_data)
    model.save(tmp_path / "done.keras")
    assert keras.saving.load_model(tmp_path / "done.keras").r == 2.0


# ------------------------------------------------------- learned weighting, any objective
def test_mwat_takes_any_objective(tiny_data, tmp_path):
    from tests.methods.helpers import meta_set

    def mwat(**kwargs):
        return km.MWATModel(make_cnn(), attack=deterministic_attack(), meta_data=meta_set(),
                            meta_set=km.MetaSet(batch_size=8), seed=0, **kwargs)

    # base="trades" is the TRADES objective: the same training, bit for bit.
    by_base = _train(mwat(base="trades", beta=4.0), tiny_data)
    by_objective = _train(mwat(objective=km.objectives.TRADESObjective(4.0)), tiny_data)
    for a, b in zip(by_base, by_objective, strict=True):
        np.testing.assert_array_equal(a, b)
    # MART's objective with BiLAW's learned weights: trains, saves and loads.
    model = mwat(objective=km.objectives.MARTObjective(5.0))
    _train(model, tiny_data)
    model.save(tmp_path / "mwat_mart.keras")
    loaded = keras.saving.load_model(tmp_path / "mwat_mart.keras")
    assert isinstance(loaded.objective, km.objectives.MARTObjective)
    assert loaded.objective.beta == 5.0
    with pytest.raises(ValueError, match="either `objective` or `base`"):
        mwat(base="trades", objective=km.objectives.MARTObjective())


def test_learned_weightings_point_to_their_model():
    from keras_mwat.methods.mwat import LookAheadWeighting
    from keras_mwat.methods.mwat_nonparametric import AlignmentWeighting

    for weighting, owner in ((LookAheadWeighting(), "km.MWATModel"),
                             (AlignmentWeighting(), "km.MWATNonParametricModel")):
        with pytest.raises(TypeError, match=owner.replace(".", r"\.")):
            km.AdversarialTrainingModel(make_cnn(), weighting=weighting)
