"""``evaluate_robustness``: clean accuracy, then attacks in cascade, with masking checks.

The protocol of AutoAttack / RobustBench: every attack runs only on the points that are
still classified correctly (``cascade=True``), the per-sample worst case is kept, points
never flip back to correct, and each adversarial batch is checked to lie inside the
threat model before it counts. The result is a ``RobustnessReport`` that stores every
number next to the settings that produced it.
"""

from __future__ import annotations

import datetime
import functools
import time
import warnings
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import validation
from keras_mwat.attacks import Attack
from keras_mwat.evaluation import masking
from keras_mwat.evaluation.presets import PRESETS, attack_name, preset_attacks
from keras_mwat.evaluation.report import RobustnessReport, library_versions

#: Slack allowed when checking that adversarial inputs respect the threat model.
_FEASIBILITY_TOLERANCE = 1e-5


def _unwrap(classifier) -> keras.Model:
    """The classifier of a training model (``MWATModel`` etc.), or ``classifier`` itself."""
    inner = getattr(classifier, "classifier", None)
    if isinstance(inner, keras.Model):
        return inner
    if not callable(classifier):
        raise TypeError(
            "`classifier` must be a Keras model (or callable) returning logits, got "
            f"{type(classifier).__name__}."
        )
    return classifier


def _logits(model, batch):
    """Inference-mode logits of ``model`` on ``batch``."""
    return model(batch, training=False)


def _collect(data, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` points of ``data``: an ``(x, y)`` pair or a dataset of batches."""
    if isinstance(data, tf.data.Dataset):
        xs, ys, count = [], [], 0
        for batch in data:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                raise ValueError(
                    "`data` must yield (x, y) batches, got elements of type "
                    f"{type(batch).__name__}."
                )
            xb, yb = np.asarray(batch[0]), np.asarray(batch[1])
            if xb.ndim >= 1 and xb.shape[0] and yb.ndim == 0:
                raise ValueError("`data` must be batched: call `.batch(...)` on the dataset.")
            xs.append(xb)
            ys.append(yb)
            count += len(xb)
            if n is not None and count >= n:
                break
        if not xs:
            raise ValueError("`data` is empty.")
        x, y = np.concatenate(xs), np.concatenate(ys)
    elif isinstance(data, tuple | list) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        raise TypeError(
            "`data` must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) "
            f"batches, got {type(data).__name__}."
        )
    if len(x) != len(y):
        raise ValueError(f"`data` has {len(x)} inputs but {len(y)} labels.")
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def _resolve_attacks(attacks, eps, norm, value_range, seed, num_classes) -> list[Attack]:
    if isinstance(attacks, str):
        return preset_attacks(attacks, eps, norm, value_range, seed, num_classes)
    if isinstance(attacks, Attack):
        attacks = [attacks]
    if not isinstance(attacks, Sequence) or not attacks:
        raise TypeError(
            f"`attacks` must be one of {list(PRESETS)} or a non-empty list of "
            f"keras_mwat.attacks.Attack objects, got {attacks!r}."
        )
    for attack in attacks:
        if not isinstance(attack, Attack):
            raise TypeError(
                "`attacks` must hold keras_mwat.attacks.Attack objects, got "
                f"{type(attack).__name__}."
            )
        if attack.norm != norm or abs(attack.eps - eps) > 1e-12:
            raise ValueError(
                f"attack {attack!r} uses norm={attack.norm!r}, eps={attack.eps!r}, but the "
                f"evaluation's threat model is norm={norm!r}, eps={eps!r}."
            )
    # Fresh copies: an attack's random generator advances with use, and an evaluation must
    # give the same numbers however often the same attack objects are passed in.
    return [type(attack).from_config(attack.get_config()) for attack in attacks]


def _check_feasible(name, x_adv, x, eps, norm, value_range) -> None:
    """Raises if an attack returned points outside the threat model (a bug, not a result)."""
    if not np.isfinite(x_adv).all():
        raise RuntimeError(f"attack {name} returned NaN or infinite inputs.")
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    limit = eps * (1 + _FEASIBILITY_TOLERANCE) + _FEASIBILITY_TOLERANCE
    if size.size and size.max() > limit:
        raise RuntimeError(
            f"attack {name} left the {norm} ball: perturbation of size {size.max():.6g} > "
            f"eps={eps:.6g}."
        )
    if value_range is not None and x_adv.size:
        low, high = value_range
        if x_adv.min() < low - _FEASIBILITY_TOLERANCE or x_adv.max() > high + _FEASIBILITY_TOLERANCE:
            raise RuntimeError(f"attack {name} left value_range={value_range}.")


def evaluate_robustness(
    classifier,
    data,
    eps: float,
    norm: str = "linf",
    attacks="standard",
    n: int | None = None,
    batch_size: int = 256,
    seed: int | None = 0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    cascade: bool = True,
    checks: bool = True,
    check_points: int = 200,
    verbose: int = 1,
    return_adversarial: bool = False,
):
    """Evaluates clean and robust accuracy of a logits classifier under a suite of attacks.

    Clean accuracy first; then each attack in turn, in a cascade (only on points still
    classified correctly), keeping per sample the first adversarial input that fools the
    model. Afterwards the masking checks run (see ``keras_mwat.evaluation.masking``) and
    each sign of gradient masking is warned (``GradientMaskingWarning``) and stored.

    Args:
        classifier: A Keras model returning logits (one returning probabilities raises
            ``ValueError``), or a training model (``MWATModel`` etc.), whose
            ``classifier`` is evaluated.
        data: ``(x, y)`` arrays (integer or one-hot labels) or a ``tf.data.Dataset`` of
            ``(x, y)`` batches.
        eps: Radius of the threat model, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        attacks: ``"quick"``, ``"standard"``, ``"autoattack"`` (see
            ``keras_mwat.evaluation.presets``) or a list of attack objects with this
            ``eps`` and ``norm``.
        n: Evaluate the first ``n`` points (all if None).
        batch_size: Points per attack batch.
        seed: Seed of the preset attacks (each gets its own, derived from it) and of the
            masking checks. Attack objects passed in keep their own seeds (each evaluation
            uses a fresh copy, so the same objects give the same numbers).
        value_range: ``(low, high)`` box of valid inputs, or None; ``x`` is checked.
        cascade: Attack only points still correct (True), or run every attack on every
            clean-correct point to get each attack's own robust accuracy (False).
        checks: Run the masking checks (FGSM/PGD/large-eps on up to ``check_points``
            points, input gradients, probabilities, black box vs white box).
        check_points: Number of clean-correct points the attack-based checks use.
        verbose: 1 shows a progress bar per attack and the report; 0 is silent.
        return_adversarial: Also return the worst-case inputs (the first fooling input per
            point, or the clean input where nothing fooled the model).

    Returns:
        A ``RobustnessReport``, or ``(report, x_adv)`` with ``return_adversarial``.

    Example:

    ```python
    report = km.evaluate_robustness(model.classifier, (x_test, y_test), eps=0.3,
                                    attacks="standard", n=500, seed=0)
    print(report)
    report.save("robustness.json")
    ```
    """
    started = time.time()
    model = _unwrap(classifier)
    eps = validation.check_nonnegative(eps, "eps")
    norm = validation.check_norm(norm)
    value_range = validation.check_value_range(value_range)
    batch_size = validation.check_int(batch_size, "batch_size")
    check_points = validation.check_int(check_points, "check_points", minimum=0)
    if n is not None:
        n = validation.check_int(n, "n")
    if seed is not None:
        seed = validation.check_int(seed, "seed", minimum=0)
    x, y = _collect(data, n)
    x = validation.check_inputs(x, value_range)
    if x.dtype.kind != "f":
        x = x.astype(keras.config.floatx())

    # One trace for every batch size (the last batch is smaller): a None batch dimension. A
    # partial, not a closure: TensorFlow's "frequent retracing" warning counts the traces of
    # every function sharing a code object, so each evaluation's closure would add to it.
    logits_of = tf.function(
        functools.partial(_logits, model),
        input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype))])

    def logits(points: np.ndarray) -> np.ndarray:
        parts = [
            np.asarray(logits_of(tf.constant(points[i : i + batch_size])))
            for i in range(0, len(points), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def predict(points: np.ndarray) -> np.ndarray:
        return logits(points).argmax(axis=1)

    clean_logits = logits(x)
    if clean_logits.ndim != 2 or clean_logits.shape[1] < 2:
        raise ValueError(
            f"`classifier` must output logits of shape (n, num_classes >= 2), got shape "
            f"{clean_logits.shape}."
        )
    if not np.isfinite(clean_logits).all():
        raise ValueError("`classifier` produced NaN or infinite logits on `data`.")
    validation.check_logits(clean_logits, name="classifier")  # a softmax model fails here
    num_classes = clean_logits.shape[1]
    labels = validation.check_labels(y, num_classes=num_classes, batch_size=len(x))
    suite = _resolve_attacks(attacks, eps, norm, value_range, seed, num_classes)

    correct = clean_logits.argmax(axis=1) == labels
    robust = correct.copy()
    x_worst = x.copy()
    entries = []
    for attack in suite:
        name = attack_name(attack)
        attack_started = time.time()
        todo = np.flatnonzero(robust if cascade else correct)
        fooled_here = np.zeros(len(todo), bool)
        bar = keras.utils.Progbar(len(todo), verbose=verbose, unit_name="point")
        if verbose:
            print(f"{name} on {len(todo)} points")
        for start in range(0, len(todo), batch_size):
            index = todo[start : start + batch_size]
            x_adv = attack(model, x[index], labels[index], batch_size=batch_size).numpy()
            _check_feasible(name, x_adv, x[index], eps, norm, value_range)
            fooled = predict(x_adv) != labels[index]
            fooled_here[start : start + len(index)] = fooled
            newly = index[fooled & robust[index]]
            x_worst[newly] = x_adv[fooled & robust[index]]
            robust[index[fooled]] = False
            bar.add(len(index), values=[("robust", float(robust.mean()))])
        entries.append(
            {
                "name": name,
                "class_name": type(attack).__name__,
                "config": attack.get_config(),
                "attacked": int(len(todo)),
                "fooled": int(fooled_here.sum()),
                "robust_accuracy_after": float(robust.mean()) if len(x) else 0.0,
                "robust_accuracy": None
                if cascade
                else float((correct.sum() - fooled_here.sum()) / max(len(x), 1)),
                "seconds": round(time.time() - attack_started, 3),
            }
        )

    messages, numbers = [], {}
    if checks:
        numbers, messages = _masking_checks(
            model, logits_of, predict, clean_logits, x, labels, correct, entries,
            eps=eps, norm=norm, value_range=value_range, seed=seed,
            batch_size=batch_size, check_points=check_points,
        )
    for message in messages:
        warnings.warn(message, masking.GradientMaskingWarning, stacklevel=2)

    report = RobustnessReport(
        clean_accuracy=float(correct.mean()) if len(x) else 0.0,
        robust_accuracy=float(robust.mean()) if len(x) else 0.0,
        attacks=entries,
        eps=eps,
        norm=norm,
        value_range=value_range,
        n=int(len(x)),
        seed=seed,
        cascade=bool(cascade),
        warnings=messages,
        checks=numbers,
        versions=library_versions(),
        duration_seconds=round(time.time() - started, 3),
        model=getattr(model, "name", type(model).__name__),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    if verbose:
        print(report)
    return (report, x_worst) if return_adversarial else report


def _masking_checks(model, logits_of, predict, clean_logits, x, labels, correct, entries, *,
                    eps, norm, value_range, seed, batch_size, check_points):
    """Runs every masking check; returns ``(numbers, messages)``."""
    messages = []
    message = masking.looks_like_probabilities(clean_logits)
    if message:
        messages.append(message)
    chosen = np.flatnonzero(correct)[:check_points]
    norms = masking.input_gradient_norms(
        lambda z: logits_of(z), x[chosen], labels[chosen], batch_size
    )
    numbers = {
        "gradient_points": int(len(chosen)),
        "zero_or_nonfinite_gradients": float(
            np.mean(~np.isfinite(norms) | (norms == 0)) if len(norms) else 0.0
        ),
    }
    message = masking.check_gradients(norms)
    if message:
        messages.append(message)
    attack_numbers, attack_messages = masking.attack_consistency_checks(
        model, predict, x[chosen], labels[chosen], eps=eps, norm=norm,
        value_range=value_range, seed=seed, batch_size=batch_size,
    )
    numbers.update(attack_numbers)
    messages.extend(attack_messages)
    message = masking.check_black_box(entries, len(x))
    if message:
        messages.append(message)
    return numbers, messages
