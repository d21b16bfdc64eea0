"""Checks for signs of gradient masking, after Athalye et al. (ICML 2018) and AutoAttack.

A robust accuracy is only believable if the white-box attacks had a useful gradient. Each
check returns a message when it finds a sign of masking (None otherwise);
``evaluate_robustness`` turns the messages into ``GradientMaskingWarning`` warnings and
stores them in the report. The signs checked:

* the model outputs probabilities (a softmax saturates, so gradients vanish);
* zero or non-finite input gradients of the margin loss on many points;
* one-step FGSM fools more points than multi-step PGD;
* robust accuracy rises when PGD takes more steps;
* robust accuracy at a very large eps (the whole input box) is not near zero;
* the black-box Square attack fools points that the white-box attacks did not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_mwat import attacks as attack_lib
from keras_mwat import losses


class GradientMaskingWarning(UserWarning):
    """Warned when an evaluation shows signs of gradient masking (see ``masking``)."""


def looks_like_probabilities(outputs: np.ndarray) -> str | None:
    """A message if the rows of ``outputs`` are in [0, 1] and sum to 1."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.size and outputs.min() >= 0 and outputs.max() <= 1:
        if np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
            return (
                "the classifier appears to output probabilities (rows in [0, 1] summing "
                "to 1), not logits: a softmax saturates and masks gradients. Evaluate the "
                "model without its final softmax."
            )
    return None


def input_gradient_norms(model_fn: Callable, x: np.ndarray, y: np.ndarray,
                         batch_size: int = 256) -> np.ndarray:
    """Per-sample L2 norm of the gradient of the CW margin loss with respect to the input.

    The margin loss (``losses.cw_margin``) does not saturate like the cross-entropy of a
    confident model, so a zero gradient here means the input gradient is really absent.
    Non-finite gradients give NaN.

    Runs eagerly: it is one pass over a few batches per evaluation, and a ``tf.function``
    built per call would be traced once per model, which TensorFlow reports as frequent
    retracing when one process evaluates several models (``keras-mwat compare``).
    """

    def norms(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            total = tf.reduce_sum(losses.cw_margin(yb, model_fn(xb)))
        grad = tape.gradient(total, xb)
        if grad is None:
            return tf.zeros(tf.shape(xb)[:1], tf.float32)
        flat = tf.reshape(tf.cast(grad, tf.float32), [tf.shape(xb)[0], -1])
        return tf.norm(flat, axis=1)

    parts = [
        norms(tf.constant(x[i : i + batch_size]), tf.constant(y[i : i + batch_size])).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def check_gradients(norms: np.ndarray, max_fraction: float = 0.1) -> str | None:
    """A message if more than ``max_fraction`` of the gradients are zero or not finite."""
    if norms.size == 0:
        return None
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.mean() > max_fraction:
        return (
            f"{bad.mean():.0%} of the input gradients ({int(bad.sum())} of {norms.size} "
            "points) are zero or not finite: gradient-based attacks cannot work on them "
            "(a non-differentiable layer, input quantisation or a saturated output?)."
        )
    return None


def _robust_fraction(predict: Callable, attack, model, x, y, batch_size) -> float:
    x_adv = attack(model, x, y, batch_size=batch_size).numpy()
    return float(np.mean(predict(x_adv) == y))


def _tolerance(n: int) -> float:
    """Accuracy differences below two points (or 2%) are not evidence of anything."""
    return max(2.0 / max(n, 1), 0.02)


def attack_consistency_checks(
    model,
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    norm: str,
    value_range: tuple[float, float] | None,
    seed: int | None,
    batch_size: int,
) -> tuple[dict, list[str]]:
    """Runs FGSM, PGD-10, PGD-100 and a large-eps PGD on ``(x, y)``; returns numbers, messages.

    ``(x, y)`` should be points the model classifies correctly. The numbers are robust
    accuracies on these points (``fgsm``, ``pgd10``, ``pgd100``, ``large_eps``) and the
    large radius used (``large_eps_radius``).
    """
    common = {"norm": norm, "value_range": value_range}
    numbers: dict = {"points": int(len(x))}
    messages: list[str] = []
    if len(x) == 0 or eps == 0:
        return numbers, messages
    run = lambda attack: _robust_fraction(predict, attack, model, x, y, batch_size)  # noqa: E731
    numbers["fgsm"] = run(attack_lib.FGSM(eps=eps, **common))
    numbers["pgd10"] = run(
        attack_lib.PGD(eps=eps, step_size=2.5 * eps / 10, num_steps=10, seed=seed, **common)
    )
    numbers["pgd100"] = run(
        attack_lib.PGD(eps=eps, step_size=2.5 * eps / 100, num_steps=100, seed=seed, **common)
    )
    tol = _tolerance(len(x))
    if numbers["fgsm"] < numbers["pgd10"] - tol:
        messages.append(
            f"one-step FGSM leaves {numbers['fgsm']:.1%} of the points robust but PGD-10 "
            f"leaves {numbers['pgd10']:.1%}: a single step should not beat an iterative "
            "attack (masked or noisy gradients?)."
        )
    if numbers["pgd100"] > numbers["pgd10"] + tol:
        messages.append(
            f"robust accuracy rises from {numbers['pgd10']:.1%} (PGD-10) to "
            f"{numbers['pgd100']:.1%} (PGD-100): more steps should never help the model."
        )
    if value_range is not None:
        width = float(value_range[1] - value_range[0])
        dims = int(np.prod(x.shape[1:]))
        large = width if norm == "linf" else width * math.sqrt(dims)
    else:
        large = 100.0 * eps
    numbers["large_eps_radius"] = large
    numbers["large_eps"] = run(
        attack_lib.PGD(eps=large, step_size=large / 10, num_steps=20, seed=seed, **common)
    )
    if numbers["large_eps"] > 0.1:
        messages.append(
            f"{numbers['large_eps']:.1%} of the points stay robust at eps={large:.4g}, where "
            "the attacker can reach any input: the attacks are not working (gradient "
            "masking?)."
        )
    return numbers, messages


def check_black_box(entries: list[dict], n: int, alpha: float = 0.002) -> str | None:
    """A message if a black-box attack fooled points that the white-box attacks missed.

    In a cascade the black-box attack runs on the points the gradient attacks left; each
    point it fools there is one they should have found. More than ``alpha * n`` points
    (and at least 2) is reported, as AutoAttack's ``check_square_sr`` does.
    """
    extra = 0
    for position, entry in enumerate(entries):
        white_box = [e for e in entries[:position] if e["class_name"] != "Square"]
        if entry["class_name"] != "Square" or not white_box:
            continue
        if entry.get("robust_accuracy") is None:  # cascade: it ran after the white-box ones
            extra += entry["fooled"]
        else:
            best_white = min(e["robust_accuracy"] for e in white_box)
            extra += max(0, round((best_white - entry["robust_accuracy"]) * n))
    if extra > max(alpha * n, 1):
        return (
            f"the black-box Square attack fooled {extra} point(s) that the white-box "
            "attacks did not: their gradients may be masked, so the white-box robust "
            "accuracy overstates robustness."
        )
    return None
