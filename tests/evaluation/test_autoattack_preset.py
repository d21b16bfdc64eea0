"""Tests of the ``"autoattack"`` preset: its attacks, their feasibility, and a cascade run."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.attacks import APGD, CWPGD, FAB, Square
from keras_mwat.evaluation import PRESETS, attack_name, preset_attacks


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_autoattack_is_autoattacks_standard_version(norm, eps):
    suite = km.evaluation.preset_attacks("autoattack", eps=eps, norm=norm, seed=7)
    assert [attack_name(a) for a in suite] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    apgd_ce, apgd_t, fab_t, square = suite
    assert [type(a) for a in suite] == [APGD, APGD, FAB, Square]
    for attack in suite:
        assert attack.eps == eps and attack.norm == norm and attack.value_range == (0.0, 1.0)
    assert (apgd_ce.loss, apgd_ce.targeted, apgd_ce.num_steps) == ("ce", False, 100)
    assert apgd_ce.num_restarts == 1
    assert (apgd_t.loss, apgd_t.targeted, apgd_t.num_steps) == ("dlr", True, 100)
    assert (apgd_t.num_target_classes, apgd_t.num_restarts) == (9, 1)
    assert (fab_t.targeted, fab_t.num_steps, fab_t.num_target_classes) == (True, 100, 9)
    assert (fab_t.num_restarts, fab_t.alpha_max, fab_t.eta, fab_t.beta) == (1, 0.1, 1.05, 0.9)
    assert (square.num_queries, square.p_init, square.num_restarts) == (5000, 0.8, 1)
    assert len({a.seed for a in suite}) == 4  # each attack its own seed


def test_autoattack_with_few_classes_and_standard_unchanged():
    three = preset_attacks("autoattack", eps=0.3, num_classes=3)
    assert [attack_name(a) for a in three] == ["APGD-CE", "APGD-T-CE", "FAB-T", "Square"]
    assert three[2].num_target_classes == 2
    two = preset_attacks("autoattack", eps=0.3, num_classes=2)
    assert [attack_name(a) for a in two] == ["APGD-CE", "FAB-T", "Square"]
    assert two[1].num_target_classes == 1
    standard = preset_attacks("standard", eps=0.3)
    assert [attack_name(a) for a in standard] == ["APGD-CE", "APGD-T", "CW-PGD", "Square"]
    assert isinstance(standard[2], CWPGD)
    assert "autoattack" in PRESETS
    assert attack_name(FAB(eps=0.1)) == "FAB"


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_every_autoattack_attack_stays_in_the_ball_and_the_box(norm, eps):
    """Each attack of the preset, with small budgets, on a small untrained CNN and random
    data: outputs inside the eps-ball and [0, 1], same shape and dtype, and each attack
    fools some points (so the check is not passed by returning the inputs)."""
    keras.utils.set_random_seed(1)
    model = km.zoo.small_cnn(input_shape=(12, 12, 1), num_classes=10, width=4)
    x = np.random.default_rng(0).uniform(size=(12, 12, 12, 1)).astype("float32")
    y = np.argmax(model(x).numpy(), 1)  # every point starts correctly classified
    small = {"num_steps": 5, "num_queries": 40, "num_target_classes": 3}
    for attack in preset_attacks("autoattack", eps=eps, norm=norm, seed=0):
        config = attack.get_config()
        config.update({k: v for k, v in small.items() if k in config})
        attack = type(attack).from_config(config)
        x_adv = attack(model, x, y).numpy()
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype, attack_name(attack)
        delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
        size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
        assert size.max() <= eps * (1 + 1e-5) + 1e-6, attack_name(attack)
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0, attack_name(attack)
        assert np.any(np.argmax(model(x_adv).numpy(), 1) != y), attack_name(attack)


def affine(num_classes=4, d=6, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, num_classes)).astype("float32")
    b = rng.normal(scale=0.1, size=num_classes).astype("float32")
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(num_classes)])
    model.layers[0].set_weights([w, b])
    return model, w, b


def minimal_norm(w, b, x, y, norm):
    """Smallest perturbation that changes an affine classifier's prediction (no box)."""
    distances = []
    for j in range(w.shape[1]):
        diff = w[:, y].T - w[:, j][None, :]
        dual = np.abs(diff).sum(1) if norm == "linf" else np.linalg.norm(diff, axis=1)
        margin = np.einsum("nd,nd->n", x, diff) + b[y] - b[j]
        distances.append(np.where(y == j, np.inf, margin / np.where(y == j, 1.0, dual)))
    return np.min(distances, axis=0)


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 0.3)])
def test_evaluate_robustness_with_autoattack_on_an_affine_classifier(norm, eps):
    """The cascade's robust accuracy is the closed-form one: a point is robust iff its
    minimal perturbation is larger than eps (points near the threshold left out)."""
    model, w, b = affine()
    x = np.random.default_rng(2).uniform(-1, 1, size=(48, 6)).astype("float32")
    y = np.argmax(model(x).numpy(), axis=1)
    y[:4] = (y[:4] + 1) % 4  # a few misclassified points: not attacked, not robust
    smallest = minimal_norm(w, b, x, y, norm)
    clear = (np.abs(smallest / eps - 1) > 0.02) | (np.arange(len(x)) < 4)
    x, y, smallest = x[clear], y[clear], smallest[clear]
    report, x_worst = km.evaluate_robustness(
        model, (x, y), eps=eps, norm=norm, attacks="autoattack", value_range=None, seed=0,
        checks=False, verbose=0, return_adversarial=True,
    )
    assert [entry["name"] for entry in report.attacks] == ["APGD-CE", "APGD-T", "FAB-T", "Square"]
    assert report.attacks[2]["config"]["targeted"] is True
    expected = np.mean((smallest > eps) & (np.arange(len(x)) >= 4))
    assert 0.1 < expected < report.clean_accuracy  # both robust and breakable points
    assert report.robust_accuracy == pytest.approx(expected)
    assert report.eps == eps and report.norm == norm
    assert km.RobustnessReport.from_json(report.to_json()) == report
    delta = (x_worst - x).astype(np.float64)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5)


def test_fab_t_alone_in_a_cascade_fools_the_breakable_points():
    """FAB-T as a custom cascade: it finds the points whose minimal norm is below eps."""
    model, w, b = affine(num_classes=5, seed=3)
    x = np.random.default_rng(3).uniform(-1, 1, size=(40, 6)).astype("float32")
    y = np.argmax(model(x).numpy(), axis=1)
    smallest = minimal_norm(w, b, x, y, "l2")
    eps = float(np.median(smallest))
    clear = np.abs(smallest / eps - 1) > 0.02
    attack = FAB(eps=eps, norm="l2", targeted=True, num_target_classes=4, value_range=None,
                 seed=0)
    report = km.evaluate_robustness(model, (x[clear], y[clear]), eps=eps, norm="l2",
                                    attacks=[attack], value_range=None, checks=False, verbose=0)
    assert report.per_attack["FAB-T"] == pytest.approx(np.mean(smallest[clear] > eps))
