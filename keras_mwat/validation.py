"""Validation at the library's boundary.

Every check raises ``ValueError`` or ``TypeError`` whose message names the argument and
the value it got, so that a bad call fails loudly instead of giving a silent wrong answer.
The checks here are eager (NumPy), except ``check_batch_in_graph``: the per-batch checks
that the training and evaluation steps run inside the graph, on every batch (a dataset's
later batches, which no eager check sees).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

NORMS = ("linf", "l2")
_NORM_ALIASES = {"linf": "linf", "inf": "linf", "l_inf": "linf", "l2": "l2", "2": "l2"}


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_nonnegative(value, name: str) -> float:
    """Returns ``value`` as a float; raises if it is not a finite number >= 0."""
    if not _is_number(value):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {name}={value!r}.")
    return float(value)


def check_finite(value, name: str) -> float:
    """Returns ``value`` as a float; raises if it is not a finite real number (any sign)."""
    if not _is_number(value):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {name}={value!r}.")
    return float(value)


def check_positive(value, name: str) -> float:
    """Returns ``value`` as a float; raises if it is not a finite number > 0."""
    if not _is_number(value):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {name}={value!r}.")
    return float(value)


def check_int(value, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int; raises if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(
                f"`{name}` must be an integer, got {value!r} ({type(value).__name__})."
            )
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {name}={value!r}.")
    return int(value)


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """Returns ``value`` if it is one of ``choices``; raises otherwise."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {name}={value!r}.")
    return value


def check_norm(norm) -> str:
    """Returns the canonical norm name ("linf" or "l2")."""
    key = str(norm).lower() if isinstance(norm, str | int | float) else None
    if key == "inf" or norm == np.inf:
        return "linf"
    if key not in _NORM_ALIASES:
        raise ValueError(f"`norm` must be one of {list(NORMS)}, got norm={norm!r}.")
    return _NORM_ALIASES[key]


def check_value_range(value_range) -> tuple[float, float] | None:
    """Returns ``(low, high)`` as floats with ``low < high``, or None for no range."""
    if value_range is None:
        return None
    try:
        low, high = value_range
    except (TypeError, ValueError):
        raise TypeError(
            f"`value_range` must be a pair (low, high) or None, got value_range={value_range!r}."
        ) from None
    low = float(low)
    high = float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(
            f"`value_range` must be finite with low < high, got value_range={value_range!r}."
        )
    return (low, high)


def check_inputs(x, value_range=None, name: str = "x", tolerance: float = 1e-6) -> np.ndarray:
    """Checks an input batch: floating dtype, finite values, inside ``value_range``.

    Args:
        x: Array-like input batch.
        value_range: ``(low, high)`` or None.
        name: Argument name used in error messages.
        tolerance: Slack allowed on the range bounds.

    Returns:
        ``x`` as a NumPy array.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
    if array.ndim < 2:
        raise ValueError(
            f"`{name}` must be a batch with shape (n, ...), got shape {array.shape}."
        )
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - finite.sum())
            raise ValueError(
                f"`{name}` contains {bad} NaN or infinite values (first at flat index "
                f"{int(np.argmin(finite.ravel()))})."
            )
    if value_range is not None and array.size:
        low, high = value_range
        lo_seen, hi_seen = float(array.min()), float(array.max())
        if lo_seen < low - tolerance or hi_seen > high + tolerance:
            raise ValueError(
                f"`{name}` has values in [{lo_seen:g}, {hi_seen:g}], outside the declared "
                f"value_range=({low:g}, {high:g}). Rescale the data (e.g. divide by 255) or "
                "declare the range it uses."
            )
    return array


def check_labels(y, num_classes: int | None = None, name: str = "y", batch_size=None) -> np.ndarray:
    """Checks labels and returns them as int64 class indices of shape (n,).

    Integer labels of shape (n,) or (n, 1) and one-hot labels of shape (n, num_classes)
    are accepted.
    """
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2 and num_classes is not None and labels.shape[1] == num_classes:
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError(f"`{name}` (one-hot) contains NaN or infinite values.")
        labels = labels.argmax(axis=1)
    if labels.ndim != 1:
        raise ValueError(
            f"`{name}` must be integer class indices of shape (n,) or one-hot of shape "
            f"(n, num_classes), got shape {np.asarray(y).shape}."
        )
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or not np.all(labels == np.round(labels)):
            raise TypeError(f"`{name}` must hold integer class indices, got {labels[:5]!r}.")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integer class indices, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(
            f"`{name}` has {labels.shape[0]} labels but the inputs have {batch_size} samples."
        )
    if labels.size and num_classes is not None:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"`{name}` has label {bad}, outside [0, {num_classes - 1}] for a classifier "
                f"with {num_classes} classes."
            )
    return labels


def check_logits(outputs, name: str = "classifier") -> None:
    """Raises if a batch of model outputs looks like probabilities instead of logits.

    Rows that are all in [0, 1] and sum to 1 are what a softmax produces. The library
    needs logits (softmax is applied inside the losses, in float32, for stability).
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(
            f"`{name}` must output logits of shape (n, num_classes), got shape {out.shape}."
        )
    if out.shape[1] < 2:
        raise ValueError(
            f"`{name}` must output at least 2 class logits, got shape {out.shape}."
        )
    if not np.isfinite(out).all():
        raise ValueError(f"`{name}` produced NaN or infinite outputs on a probe batch.")
    rows_sum_to_one = np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    if rows_sum_to_one and out.min() >= 0.0 and out.max() <= 1.0:
        raise ValueError(
            f"`{name}` appears to output probabilities (its outputs are non-negative, at "
            "most 1 and sum to 1 per row); keras-mwat needs logits. Remove the final "
            "softmax (e.g. `Dense(num_classes)`, i.e. `activation=None`, instead of "
            "`Dense(num_classes, activation='softmax')`)."
        )


def check_classifier(classifier) -> tuple[tuple, int]:
    """Checks that ``classifier`` is a built Keras model and returns (input_shape, classes).

    Args:
        classifier: A Keras model mapping a batch of inputs to logits.

    Returns:
        ``(input_shape, num_classes)`` with ``input_shape`` excluding the batch axis.
    """
    import keras

    if not isinstance(classifier, keras.Model):
        raise TypeError(
            f"`classifier` must be a keras.Model, got {type(classifier).__name__}."
        )
    input_shape = None
    try:
        shape = classifier.input_shape
        if isinstance(shape, list | tuple) and shape and isinstance(shape[0], list | tuple):
            if len(shape) != 1:
                raise ValueError(
                    f"`classifier` must take a single input, got input shapes {shape}."
                )
            shape = shape[0]
        input_shape = tuple(shape[1:])
    except (AttributeError, ValueError) as error:
        if "single input" in str(error):
            raise
        input_shape = None
    if input_shape is None or not classifier.built:
        raise ValueError(
            f"`classifier` ({classifier.name}) is not built: its input shape is unknown. "
            "Build it with an Input layer (`keras.Input(shape=...)`) or call it once on a "
            "batch before wrapping it."
        )
    if any(d is None for d in input_shape):
        raise ValueError(
            f"`classifier` must have a fully known input shape, got {input_shape}."
        )
    last = classifier.layers[-1] if getattr(classifier, "layers", None) else None
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") in ("softmax", "sigmoid"):
        raise ValueError(
            f"`classifier` ends with a {activation.__name__} activation (layer "
            f"{last.name!r}); keras-mwat needs logits. Use a linear last layer."
        )
    output_shape = classifier.output_shape
    if isinstance(output_shape, list):
        output_shape = output_shape[0]
    num_classes = output_shape[-1]
    if num_classes is None or len(output_shape) != 2:
        raise ValueError(
            f"`classifier` must output logits of shape (n, num_classes), got {output_shape}."
        )
    return input_shape, int(num_classes)


#: How every in-graph batch check message starts (``batch_check_message`` finds it).
BATCH_CHECK_PREFIX = "keras-mwat batch check failed"
#: How every in-graph batch check message ends.
BATCH_CHECK_SUFFIX = "compile(check_batches=False) turns these checks off)"


def check_batch_in_graph(x, y, sample_weight=None, *, num_classes: int, value_range=None,
                         where=None, tolerance: float = 1e-6):
    """In-graph checks of one ``(x, y, sample_weight)`` batch; returns it, gated on them.

    Checks that floating inputs are finite, that inputs lie inside ``value_range`` (if
    not None), that labels are integer-valued class indices in ``[0, num_classes)``
    (one-hot labels: finite) and that sample weights are finite and >= 0. On failure an
    ``InvalidArgumentError`` is raised whose message starts with ``BATCH_CHECK_PREFIX``,
    names every problem with the offending value (min/max seen, bad label, count of
    non-finite values) and ``where`` the batch was (the text is built only on failure).
    The returned tensors depend on the check, so nothing computed from them (the
    optimizer's update) runs before it. Works in replica context (``tf.distribute``) and
    in ``tf.data`` functions; XLA compiles asserts away, so do not call it under XLA.

    Args:
        x: Input batch, (n, ...).
        y: Labels: integer indices (n,) or (n, 1), or one-hot (n, num_classes).
        sample_weight: Per-sample weights or None.
        num_classes: Number of classes of the classifier.
        value_range: ``(low, high)`` the inputs must lie in, or None.
        where: A callable returning a scalar string tensor naming the batch (e.g.
            "training step 3"), called only on failure.
        tolerance: Slack allowed on the range bounds.

    Returns:
        ``(x, y, sample_weight)`` as tensors that are computed after the checks.

    Example:
    ```python
    x, y, _ = check_batch_in_graph(x, y, num_classes=10, value_range=(0.0, 1.0),
                                   where=lambda: tf.constant("training step 3"))
    ```
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y)
    checks = []  # (ok: bool scalar, message: callable -> string scalar), built on failure

    def count_bad(values):
        return tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(values)), tf.int64))

    x_finite = tf.constant(True)
    if x.dtype.is_floating:
        x_finite = tf.reduce_all(tf.math.is_finite(x))
        checks.append((x_finite, lambda: tf.strings.format(
            "the inputs `x` contain {} NaN or infinite values (NaN in the data or in its "
            "preprocessing)", count_bad(x))))
    if value_range is not None:
        low, high = value_range
        seen_low = tf.cast(tf.reduce_min(x), tf.float32)
        seen_high = tf.cast(tf.reduce_max(x), tf.float32)
        inside = tf.logical_and(seen_low >= low - tolerance, seen_high <= high + tolerance)
        checks.append((tf.logical_or(inside, tf.logical_not(x_finite)), lambda: tf.strings.format(
            "the inputs `x` have values in [{}, {}], outside value_range=({}, {}) of the attack "
            "(rescale the data, e.g. divide by 255, or declare the range it uses)",
            (seen_low, seen_high, low, high))))
    one_hot = y.shape.rank == 2 and y.shape[-1] == num_classes and num_classes > 1
    if one_hot:
        if y.dtype.is_floating:
            checks.append((tf.reduce_all(tf.math.is_finite(y)), lambda: tf.strings.format(
                "the one-hot labels `y` contain {} NaN or infinite values", count_bad(y))))
    else:
        labels = tf.reshape(y, [-1])
        integer = tf.constant(True)
        if labels.dtype.is_floating:
            integer = tf.reduce_all(tf.equal(labels, tf.round(labels)))  # False on NaN / inf
            checks.append((integer, lambda: tf.strings.format(
                "the labels `y` hold {}, not an integer class index",
                tf.boolean_mask(labels, tf.not_equal(labels, tf.round(labels)))[0])))
        if labels.dtype.is_floating or labels.dtype.is_integer:
            smallest, largest = tf.reduce_min(labels), tf.reduce_max(labels)
            in_range = tf.logical_and(smallest >= 0,
                                      largest <= tf.cast(num_classes - 1, labels.dtype))
            checks.append((tf.logical_or(in_range, tf.logical_not(integer)),
                           lambda: tf.strings.format(
                "the labels `y` hold label {}, outside [0, {}] for a classifier with "
                "num_classes={}",
                (tf.where(smallest < 0, smallest, largest), num_classes - 1, num_classes))))
    if sample_weight is not None:
        sample_weight = tf.convert_to_tensor(sample_weight)
        weights = tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(weights))
        checks.append((finite, lambda: tf.strings.format(
            "`sample_weight` contains {} NaN or infinite values", count_bad(weights))))
        smallest_weight = tf.reduce_min(weights)
        checks.append((tf.logical_or(smallest_weight >= 0, tf.logical_not(finite)),
                       lambda: tf.strings.format(
            "`sample_weight` has the negative value {} (weights must be >= 0)",
            smallest_weight)))
    if not checks:
        return x, y, sample_weight
    oks = tf.stack([ok for ok, _ in checks])

    def fail():
        messages = tf.stack([message() for _, message in checks])
        detail = tf.strings.reduce_join(tf.boolean_mask(messages, tf.logical_not(oks)),
                                        separator="; ")
        place = where() if where is not None else tf.constant("a batch")
        text = tf.strings.join([f"{BATCH_CHECK_PREFIX} in ", place, ": ", detail,
                                f" ({BATCH_CHECK_SUFFIX}"])
        assertion = tf.debugging.Assert(False, [text])
        with tf.control_dependencies([assertion] if assertion is not None else []):
            return tf.constant(False)

    passed = tf.cond(tf.reduce_all(oks), lambda: tf.constant(True), fail)
    with tf.control_dependencies([passed]):
        x, y = tf.identity(x), tf.identity(y)
        if sample_weight is not None:
            sample_weight = tf.identity(sample_weight)
    return x, y, sample_weight


def batch_check_message(error_text: str) -> str | None:
    """The ``check_batch_in_graph`` message inside a TensorFlow error's text, or None.

    Example:
    ```python
    batch_check_message(str(error))  # "keras-mwat batch check failed in training step 3: ..."
    ```
    """
    # Graph asserts print their strings C-escaped.
    error_text = error_text.replace("\\'", "'").replace('\\"', '"')
    start = error_text.find(BATCH_CHECK_PREFIX)
    if start < 0:
        return None
    end = error_text.find(BATCH_CHECK_SUFFIX, start)
    if end < 0:
        return error_text[start:].splitlines()[0]
    return error_text[start:end + len(BATCH_CHECK_SUFFIX)]
