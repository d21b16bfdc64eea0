"""Validation at the library's boundary.

Every check raises ``ValueError`` or ``TypeError`` whose message names the argument and
the value it got, so that a bad call fails loudly instead of giving a silent wrong answer.
The checks here are eager (NumPy); in-graph code trusts what passed them.
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
