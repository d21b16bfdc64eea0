"""Figures of a ``keras-mwat compare`` run: what MWAT learned, and how the methods compare.

Seven pictures (issues 8 and 15), drawn with matplotlib's Agg canvas (no display needed;
matplotlib comes with the ``figures`` extra: ``pip install 'keras-mwat[figures]'``):

* ``weight_vs_margin``: the learned weight against the Definition 2.2 margin on the model's
  own adversarial examples, next to MAIL's, WMMR's and GAIRAT's fixed weightings;
* ``class_mean_weights``: the mean learned weight per class;
* ``class_weight_distributions``: the weights of each class's points next to the
  adversarial confusion matrix (the paper's per-class figure);
* ``weight_extremes_grid``: the lowest- and highest-weighted training images;
* ``weights_over_epochs``: the weights of a fixed probe set over training, for clean and
  adversarial inputs (from ``km.callbacks.WeightHistory``);
* ``accuracy_scatter``: clean against worst-case robust accuracy, one point per method;
* ``training_curves``: robust accuracy and loss per epoch, per method.

Every plotting function returns ``(figure, data)``: the ``matplotlib.figure.Figure`` and a
dict of the NumPy arrays it plotted, so the numbers behind a picture can be checked.
``make_figures`` writes the PNGs from a results directory; ``run`` is the command-line
entry point. The peers' weightings come from ``keras_mwat.weighting`` (one implementation
of each formula) and their parameters default to those of the method classes.

Example:
```python
from keras_mwat import figures
paths = figures.make_figures("runs/20250101-120000", "docs/img")
```
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_mwat import weighting
from keras_mwat._optional import require

# The `figures` extra: a one-line error naming it when matplotlib is missing.
require("matplotlib", "keras_mwat.figures")
from matplotlib import colormaps  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = [
    "FIGURE_NAMES",
    "accuracy_scatter",
    "binned_mean",
    "class_mean_weights",
    "class_weight_distributions",
    "confusion_matrix",
    "inspect_with_kappa",
    "load_rows",
    "load_weight_history",
    "logits_with_margin",
    "make_figures",
    "run",
    "training_curves",
    "weight_extremes_grid",
    "weight_vs_margin",
    "weights_over_epochs",
]

#: File names (without ``.png``) that ``make_figures`` writes.
FIGURE_NAMES = ("weight_vs_margin", "class_mean_weights", "class_weight_distributions",
                "weight_extremes_grid", "weights_over_epochs", "accuracy_scatter",
                "training_curves")

# A fixed colour and marker per method, the same in every figure.
_METHOD_ORDER = ("mwat", "pgd_at", "trades", "mart", "mail", "gairat", "wmmr", "mwn")
_MARKERS = ("*", "o", "s", "D", "^", "v", "P", "X", "<", ">", "h", "p")
_DPI = 150


# --------------------------------------------------------------------------- helpers
def _new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas (never a GUI backend), with constrained layout."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _caption(figure: Figure, text: str, width: int = 150) -> None:
    """Writes ``text`` under the axes (kept in the PNG by ``bbox_inches="tight"``)."""
    figure.text(0.01, -0.01, textwrap.fill(text, width), ha="left", va="top", fontsize=7)


def _method_rank(method: str) -> tuple[int, str]:
    if method in _METHOD_ORDER:
        return _METHOD_ORDER.index(method), method
    return len(_METHOD_ORDER), method


def _style(method: str, methods: Sequence[str]) -> tuple[Any, str]:
    """(colour, marker) of ``method``: fixed for the known methods, then by order."""
    if method in _METHOD_ORDER:
        index = _METHOD_ORDER.index(method)
    else:
        unknown = sorted(m for m in methods if m not in _METHOD_ORDER)
        index = len(_METHOD_ORDER) + unknown.index(method)
    return colormaps["tab10"](index % 10), _MARKERS[index % len(_MARKERS)]


def _group(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows by method (known methods in ``_METHOD_ORDER``, then by name), seeds sorted."""
    if not rows:
        raise ValueError("`rows` is empty: no result of a compare run to plot.")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if "method" not in row:
            raise ValueError(f"A result row has no 'method' key: keys {sorted(row)}.")
        groups.setdefault(str(row["method"]), []).append(row)
    return {method: sorted(groups[method], key=lambda r: r.get("seed", 0))
            for method in sorted(groups, key=_method_rank)}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value), as in ``compare``."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _class_default(class_name: str, argument: str) -> float:
    """The default of ``argument`` in the constructor of ``keras_mwat.<class_name>``."""
    import keras_mwat as km

    return inspect.signature(getattr(km, class_name).__init__).parameters[argument].default


def _numpy(tensor) -> np.ndarray:
    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def logits_with_margin(margin) -> tuple[np.ndarray, np.ndarray]:
    """Labels and two-class logits whose Definition 2.2 margin is ``margin``.

    For logits ``(z, 0)`` and label 0, ``p_0 - p_1 = tanh(z / 2)``, so ``z = 2 artanh(m)``.
    MAIL's and WMMR's weights depend on the logits only through this margin, so evaluating
    ``keras_mwat.weighting.mail`` / ``wmmr`` on these logits gives their weights as a
    function of the margin. Margins are clipped to ``[-1 + 1e-9, 1 - 1e-9]``.

    Args:
        margin: Margins in [-1, 1], any shape (flattened).

    Returns:
        ``(y, logits)``: int32 zeros of shape (n,) and float64 logits of shape (n, 2).

    Example:
    ```python
    y, logits = logits_with_margin([-0.5, 0.0, 0.9])
    keras_mwat.margins.probability_margin(y, logits)   # [-0.5, 0.0, 0.9]
    ```
    """
    value = np.clip(np.asarray(margin, dtype=np.float64).reshape(-1), -1 + 1e-9, 1 - 1e-9)
    logits = np.stack([2.0 * np.arctanh(value), np.zeros_like(value)], axis=1)
    return np.zeros(len(value), dtype=np.int32), logits


def binned_mean(values, weights, edges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``weights`` per bin of ``values``; the binning of ``WeightTensorBoard``.

    Bin ``b`` holds ``edges[b] <= v < edges[b + 1]``; values outside the edges go to the
    first or last bin.

    Args:
        values: Per-point values that choose the bin, shape (n,).
        weights: Per-point values to average, shape (n,).
        edges: Increasing bin edges, shape (bins + 1,).

    Returns:
        ``(centres, means, counts)``, each of shape (bins,); ``means`` is NaN in empty bins.

    Example:
    ```python
    centres, means, counts = binned_mean(margin, weight, np.linspace(-1, 1, 21))
    ```
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    bins = len(edges) - 1
    index = np.clip(np.digitize(values, edges) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=weights, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return (edges[:-1] + edges[1:]) / 2, means, counts


# ------------------------------------------------------------- what MWAT learned
def inspect_with_kappa(model, x, y) -> dict[str, Any]:
    """``model.inspect_weights(x, y)`` plus the adversarial predictions and GAIRAT's kappa.

    ``inspect_weights`` runs the model's training attack and returns ``margin``
    (Definition 2.2 on the adversarial logits), ``weight`` (normalised over the points, as in
    training) and ``y``. The same single attack run also gives each point's predicted class
    on its adversarial example and, when the attack records a trace
    (``Attack.perturb_with_trace``: PGD, FGSM, CWPGD), its kappa (the trace's
    ``correct_steps``: the number of attack iterates classified correctly). So
    ``prediction[i]`` and ``kappa[i]`` belong to the very adversarial example behind
    ``margin[i]``, and the attack's random generator advances exactly as in
    ``inspect_weights``.

    Args:
        model: A ``keras_mwat`` training model (``AdversarialTrainingModel``).
        x: Inputs, shape (n, ...).
        y: Integer labels (n,) or one-hot labels (n, K).

    Returns:
        A dict of NumPy arrays ``margin``, ``weight``, ``y``, ``prediction`` (int, (n,): the
        class predicted on each adversarial example), ``kappa`` (int, (n,); None when the
        attack records no trace, e.g. APGD), and ``num_steps`` (the attack's K, or None
        when it has no ``num_steps``).

    Example:
    ```python
    info = inspect_with_kappa(model, x_test[:500], y_test[:500])
    info["margin"], info["weight"], info["prediction"], info["kappa"]
    ```
    """
    details = model._inspect(x, y, trace=True)
    inspected = {key: details[key] for key in ("margin", "weight", "y")}
    num_steps = getattr(model.attack, "num_steps", None)
    inspected["num_steps"] = None if num_steps is None else int(num_steps)
    kappa = details["kappa"]
    inspected["kappa"] = None if kappa is None else np.asarray(kappa).astype(np.int64)
    inspected["prediction"] = np.asarray(details["prediction"]).astype(np.int64)
    return inspected


def weight_vs_margin(
    model,
    x,
    y,
    *,
    inspected: dict[str, Any] | None = None,
    bins: int = 20,
    mail_bias: float | None = None,
    mail_slope: float | None = None,
    gairat_lam: float | None = None,
    wmmr_alpha: float | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """The learned weight as a function of the margin, against MAIL, WMMR and GAIRAT.

    Left panel, against the Definition 2.2 margin ``m = p_y - max_{j != y} p_j`` of each
    point's adversarial example under the model's own training attack: the model's weights
    (scatter, coloured by class; normalised over the points as in training) and their mean
    per margin bin; MAIL's ``keras_mwat.weighting.mail`` (``3 sigmoid(slope (-m + bias))``,
    not normalised, as ``MAILModel`` uses it); WMMR's ``keras_mwat.weighting.wmmr``
    (``exp(-alpha m)``) rescaled to mean 1 over the same points; and, when kappa is known,
    GAIRAT's weight of each point from *its own kappa* on the same adversarial example,
    averaged per margin bin (GAIRAT depends on kappa, not on the margin). Right panel,
    against kappa: GAIRAT's ``keras_mwat.weighting.gairat`` at kappa = 0..K, rescaled to
    mean 1 over the points, and the model's mean weight per kappa value.

    Args:
        model: A trained ``keras_mwat`` model (any method; MWAT is the point).
        x: Inputs, shape (n, ...).
        y: Integer labels (n,) or one-hot labels (n, K).
        inspected: The result of ``inspect_with_kappa(model, x, y)``, to reuse (computed
            when None).
        bins: Number of equal-width margin bins in [-1, 1].
        mail_bias: MAIL's bias (None: ``MAILModel``'s default).
        mail_slope: MAIL's slope (None: ``MAILModel``'s default).
        gairat_lam: GAIRAT's lambda (None: ``GAIRATModel``'s default).
        wmmr_alpha: WMMR's alpha (None: ``WMMRModel``'s default).

    Returns:
        ``(figure, data)``; ``data`` holds ``margin``, ``weight``, ``y``, ``kappa`` (or
        None), ``num_steps``, ``bin_edges``, ``bin_centres``, ``bin_mean``, ``bin_count``,
        ``curve_margin`` (grid of margins), ``mail`` and ``wmmr`` (on that grid),
        ``wmmr_points`` (mean 1 over the points), ``gairat_points`` (or None),
        ``gairat_bin_mean`` (or None), ``gairat_kappa``, ``gairat_curve``,
        ``weight_per_kappa`` (or None), the parameters used and ``caption``.

    Example:
    ```python
    figure, data = weight_vs_margin(model, x_test[:500], y_test[:500])
    figure.savefig("weight_vs_margin.png", bbox_inches="tight")
    ```
    """
    import keras_mwat as km

    bins = km.validation.check_int(bins, "bins", minimum=1)
    mail_bias = _class_default("MAILModel", "bias") if mail_bias is None else mail_bias
    mail_slope = _class_default("MAILModel", "slope") if mail_slope is None else mail_slope
    gairat_lam = _class_default("GAIRATModel", "lam") if gairat_lam is None else gairat_lam
    wmmr_alpha = _class_default("WMMRModel", "alpha") if wmmr_alpha is None else wmmr_alpha
    info = inspect_with_kappa(model, x, y) if inspected is None else inspected
    margin = np.asarray(info["margin"], dtype=np.float64)
    weight = np.asarray(info["weight"], dtype=np.float64)
    labels = np.asarray(info["y"])
    kappa, num_steps = info.get("kappa"), info.get("num_steps")

    edges = np.linspace(-1.0, 1.0, bins + 1)
    centres, means, counts = binned_mean(margin, weight, edges)
    grid = np.linspace(-1.0, 1.0, 201)
    grid_y, grid_logits = logits_with_margin(grid)
    mail_curve = _numpy(weighting.mail(grid_y, grid_logits, bias=mail_bias, slope=mail_slope))
    point_y, point_logits = logits_with_margin(margin)
    wmmr_raw = _numpy(weighting.wmmr(point_y, point_logits, alpha=wmmr_alpha))
    wmmr_scale = 1.0 / wmmr_raw.mean()
    wmmr_curve = _numpy(weighting.wmmr(grid_y, grid_logits, alpha=wmmr_alpha)) * wmmr_scale

    data: dict[str, Any] = {
        "margin": margin, "weight": weight, "y": labels, "kappa": kappa,
        "num_steps": num_steps, "bin_edges": edges, "bin_centres": centres, "bin_mean": means,
        "bin_count": counts, "curve_margin": grid, "mail": mail_curve, "wmmr": wmmr_curve,
        "wmmr_points": wmmr_raw * wmmr_scale, "gairat_points": None, "gairat_bin_mean": None,
        "gairat_kappa": None, "gairat_curve": None, "weight_per_kappa": None,
        "mail_bias": mail_bias, "mail_slope": mail_slope, "gairat_lam": gairat_lam,
        "wmmr_alpha": wmmr_alpha,
    }
    if num_steps is not None:
        kappa_grid = np.arange(num_steps + 1)
        data["gairat_kappa"] = kappa_grid
        if kappa is not None:
            # One call: the points and the grid get the same scale; then mean 1 over the points.
            both = _numpy(weighting.gairat(
                np.concatenate([kappa, kappa_grid]).astype(np.float32), num_steps,
                lam=gairat_lam)).astype(np.float64)
            scale = 1.0 / both[: len(kappa)].mean()
            data["gairat_points"] = both[: len(kappa)] * scale
            data["gairat_curve"] = both[len(kappa):] * scale
            data["gairat_bin_mean"] = binned_mean(margin, data["gairat_points"], edges)[1]
            data["weight_per_kappa"] = binned_mean(
                kappa, weight, np.arange(num_steps + 2) - 0.5)[1]
        else:
            data["gairat_curve"] = _numpy(weighting.gairat(
                kappa_grid.astype(np.float32), num_steps, lam=gairat_lam)).astype(np.float64)

    figure = _new_figure(11.0, 4.2)
    left, right = figure.subplots(1, 2, width_ratios=(1.6, 1.0))
    name = type(model).__name__
    scatter = left.scatter(margin, weight, c=labels, cmap="tab10", vmin=0, vmax=9, s=7,
                           alpha=0.45, linewidths=0, label=f"{name}: each point")
    filled = counts > 0
    left.plot(centres[filled], means[filled], "k-o", ms=3, lw=1.6,
              label=f"{name}: mean per margin bin")
    sign = "−" if mail_bias < 0 else "+"
    left.plot(grid, mail_curve, color="tab:blue", lw=1.3,
              label=f"MAIL 3·sigmoid({mail_slope:g}·(−m {sign} {abs(mail_bias):g})), "
                    "not normalised")
    left.plot(grid, wmmr_curve, color="tab:green", lw=1.3,
              label=f"WMMR exp(−{wmmr_alpha:g}·m), mean 1 on these points")
    if data["gairat_bin_mean"] is not None:
        left.plot(centres[filled], data["gairat_bin_mean"][filled], color="tab:orange",
                  ls="-.", marker="x", ms=4, lw=1.2,
                  label="GAIRAT from each point's κ, mean per margin bin")
    left.axhline(1.0, color="gray", lw=0.5)
    left.axvline(0.0, color="gray", lw=0.5)
    left.set(xlim=(-1.05, 1.05), xlabel="margin m = p_y − max_{j≠y} p_j on the adversarial "
             "example (Def. 2.2)", ylabel="weight",
             title=f"{name}: learned weight vs margin (n = {len(margin)})")
    left.legend(fontsize=6.5, loc="upper right")
    figure.colorbar(scatter, ax=left, label="class", pad=0.01)

    if data["gairat_curve"] is not None:
        kappa_grid = data["gairat_kappa"]
        right.plot(kappa_grid, data["gairat_curve"], color="tab:orange", marker="o", ms=3,
                   label=f"GAIRAT (λ = {gairat_lam:g}, K = {num_steps})")
        if data["weight_per_kappa"] is not None:
            right.plot(kappa_grid, data["weight_per_kappa"], "k*", ms=6,
                       label=f"{name}: mean weight per κ")
            kappa_counts = np.bincount(kappa, minlength=num_steps + 1)[: num_steps + 1]
            right.set_xticks(kappa_grid, [f"{k}\n{c}" for k, c in zip(kappa_grid, kappa_counts)],
                             fontsize=6)
            right.set_xlabel("κ (attack iterates still correct) / points with that κ")
        else:
            right.set_xlabel("κ (attack iterates still correct)")
        right.axhline(1.0, color="gray", lw=0.5)
        right.set(ylabel="weight", title="GAIRAT's weight is a function of κ")
        right.legend(fontsize=6.5)
    else:
        right.text(0.5, 0.5, "GAIRAT needs a PGD attack (κ counts its steps)",
                   ha="center", va="center", transform=right.transAxes, fontsize=8)
        right.set_axis_off()

    if kappa is not None:
        gairat_note = ("GAIRAT depends on κ, not on the margin: on the left, each point's GAIRAT "
                       "weight from its own κ on the same adversarial example (same attack "
                       "run, checked), averaged per margin bin; on the right, GAIRAT against κ, "
                       "rescaled to mean 1 over the points.")
    elif num_steps is not None:
        gairat_note = ("GAIRAT depends on κ, not on the margin, and κ of these points is not "
                       "available: right panel only, normalised to mean 1 over κ = 0..K.")
    else:
        gairat_note = "GAIRAT is not drawn: the model's attack has no PGD steps to count κ."
    data["caption"] = (
        f"Weights of {name} (normalised over the {len(margin)} points as in training) against "
        "the Definition 2.2 probability margin of each point's adversarial example under the "
        "model's own training attack, and the fixed weightings of the peers, computed by "
        "keras_mwat.weighting: MAIL (weights in (0, 3), not normalised, as MAILModel uses "
        "them) and WMMR (rescaled to mean 1 over the same points) as functions of the margin. "
        + gairat_note)
    _caption(figure, data["caption"])
    return figure, data


def class_mean_weights(
    model, x, y, *, inspected: dict[str, Any] | None = None
) -> tuple[Figure, dict[str, Any]]:
    """Bar chart of the mean learned weight per class, with standard errors.

    Args:
        model: A trained ``keras_mwat`` model.
        x: Inputs, shape (n, ...).
        y: Integer labels (n,) or one-hot labels (n, K).
        inspected: ``model.inspect_weights(x, y)`` (or ``inspect_with_kappa``) to reuse;
            computed when None.

    Returns:
        ``(figure, data)``; ``data`` holds ``classes`` (0..K-1), ``mean`` (NaN for a class
        without points), ``sem`` (standard error of the mean, NaN below 2 points),
        ``count``, ``weight``, ``y`` and ``caption``.

    Example:
    ```python
    figure, data = class_mean_weights(model, x_test[:500], y_test[:500])
    data["mean"]          # one mean weight per class
    ```
    """
    info = model.inspect_weights(x, y) if inspected is None else inspected
    weight = np.asarray(info["weight"], dtype=np.float64)
    labels = np.asarray(info["y"]).astype(np.int64)
    num_classes = int(getattr(model, "num_classes", labels.max() + 1))
    classes = np.arange(num_classes)
    count = np.bincount(labels, minlength=num_classes)[:num_classes]
    mean = np.full(num_classes, np.nan)
    sem = np.full(num_classes, np.nan)
    for label in classes:
        chosen = weight[labels == label]
        if len(chosen):
            mean[label] = chosen.mean()
        if len(chosen) > 1:
            sem[label] = chosen.std(ddof=1) / np.sqrt(len(chosen))

    name = type(model).__name__
    figure = _new_figure(6.5, 3.6)
    ax = figure.subplots()
    ax.bar(classes, np.nan_to_num(mean), yerr=np.nan_to_num(sem), capsize=2,
           color=[colormaps["tab10"](int(c) % 10) for c in classes], alpha=0.85)
    ax.axhline(weight.mean(), color="k", lw=0.8, ls="--",
               label=f"mean over all points ({weight.mean():.3f})")
    ax.set_xticks(classes, [f"{c}\n{n}" for c, n in zip(classes, count)], fontsize=7)
    ax.set(xlabel="class / points", ylabel="mean weight",
           title=f"{name}: mean learned weight per class (n = {len(weight)})")
    ax.legend(fontsize=7, loc="lower right")
    caption = (f"Mean per class of the weights {name} gives the adversarial examples of its own "
               "training attack (normalised over all points, as in training); error bars: "
               "standard error of the mean over the class's points.")
    _caption(figure, caption, width=110)
    return figure, {"classes": classes, "mean": mean, "sem": sem, "count": count,
                    "weight": weight, "y": labels, "caption": caption}


def confusion_matrix(y, prediction, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y: True classes, int, shape (n,).
        prediction: Predicted classes, int, shape (n,).
        num_classes: K; the matrix is K x K.

    Returns:
        int64 array of shape (K, K): entry ``[i, j]`` counts the points of class ``i``
        predicted as ``j``.

    Example:
    ```python
    confusion_matrix([0, 0, 1], [0, 1, 1], 2)   # [[1, 1], [0, 1]]
    ```
    """
    import keras_mwat as km

    num_classes = km.validation.check_int(num_classes, "num_classes", minimum=1)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    prediction = np.asarray(prediction, dtype=np.int64).reshape(-1)
    if y.shape != prediction.shape:
        raise ValueError(f"`y` and `prediction` must have the same length, got {len(y)} and "
                         f"{len(prediction)}.")
    for name, values in (("y", y), ("prediction", prediction)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"`{name}` must hold classes in [0, {num_classes}), got values "
                             f"from {values.min()} to {values.max()}.")
    return np.bincount(y * num_classes + prediction,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _class_labels(classes, class_names: Sequence[str] | None) -> list[str]:
    if class_names:
        return [str(class_names[c]) for c in classes]
    return [str(c) for c in classes]


def _inspected_arrays(model, x, y, inspected) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """``inspected`` (computed with predictions when None), its weights and labels."""
    info = inspect_with_kappa(model, x, y) if inspected is None else inspected
    return (info, np.asarray(info["weight"], dtype=np.float64),
            np.asarray(info["y"]).astype(np.int64))


def class_weight_distributions(
    model,
    x,
    y,
    *,
    inspected: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """Per class, the distribution of the learned weights, next to the adversarial confusion.

    Left panel: for each true class, a box plot (quartiles, whiskers at 1.5 IQR) of the
    weights the model gives its points, with the points themselves jittered on top, on the
    scale of ``model.inspect_weights`` (normalised over all points, a uniform weight is 1).
    Right panel: the confusion matrix of the model on its own training attack's adversarial
    examples of the same points, true class against predicted class, each row normalised
    to sum 1 (the diagonal is the class's robust accuracy). ``data`` also holds the
    correlation over classes between the mean weight and the adversarial error rate
    (1 - diagonal): positive when the weights favour the classes the attack wins on.

    Args:
        model: A trained ``keras_mwat`` model.
        x: Inputs, shape (n, ...).
        y: Integer labels (n,) or one-hot labels (n, K).
        inspected: ``inspect_with_kappa(model, x, y)`` to reuse (it needs ``prediction``);
            computed when None.
        class_names: Names of the classes (default their indices).

    Returns:
        ``(figure, data)``; ``data`` holds ``classes``, ``weight``, ``y``, ``prediction``,
        ``count`` (points per class), ``counts`` (confusion counts, (K, K)),
        ``confusion`` (row-normalised, NaN rows for classes without points),
        ``class_mean``, ``class_median``, ``class_q25``, ``class_q75`` (NaN for empty
        classes), ``class_error`` (1 - diagonal), ``weight_error_correlation`` (Pearson,
        over classes with points; NaN if undefined) and ``caption``.

    Example:
    ```python
    figure, data = class_weight_distributions(model, x_test[:500], y_test[:500])
    data["confusion"][3, 5]     # fraction of class 3 attacked into class 5
    ```
    """
    info, weight, labels = _inspected_arrays(model, x, y, inspected)
    if info.get("prediction") is None:
        raise ValueError("`inspected` has no adversarial 'prediction': pass the result of "
                         "inspect_with_kappa (or None to compute it).")
    prediction = np.asarray(info["prediction"]).astype(np.int64)
    num_classes = int(getattr(model, "num_classes", 0) or max(labels.max(), prediction.max())
                      + 1)
    classes = np.arange(num_classes)
    counts = confusion_matrix(labels, prediction, num_classes)
    count = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confusion = counts / count[:, None]
    stats = {name: np.full(num_classes, np.nan) for name in ("mean", "median", "q25", "q75")}
    for label in classes:
        chosen = weight[labels == label]
        if len(chosen):
            stats["mean"][label] = chosen.mean()
            stats["q25"][label], stats["median"][label], stats["q75"][label] = np.quantile(
                chosen, [0.25, 0.5, 0.75])
    error = 1.0 - np.diag(confusion)
    present = count > 0
    correlation = np.nan
    if present.sum() > 2 and np.std(stats["mean"][present]) > 0 and np.std(error[present]) > 0:
        correlation = float(np.corrcoef(stats["mean"][present], error[present])[0, 1])

    name = type(model).__name__
    names = _class_labels(classes, class_names)
    figure = _new_figure(12.0, 4.6)
    left, right = figure.subplots(1, 2, width_ratios=(1.25, 1.0))
    groups = [weight[labels == c] for c in classes]
    left.boxplot([g if len(g) else [np.nan] for g in groups], positions=classes, widths=0.6,
                 showfliers=False, medianprops={"color": "k"},
                 whiskerprops={"color": "0.4"}, capprops={"color": "0.4"},
                 boxprops={"color": "0.4"})
    jitter = np.random.default_rng(0).uniform(-0.22, 0.22, len(weight))
    left.scatter(labels + jitter, weight, c=[colormaps["tab10"](int(c) % 10) for c in labels],
                 s=5, alpha=0.45, linewidths=0)
    left.plot(classes, stats["mean"], "k_", ms=12, mew=1.5, label="class mean")
    left.axhline(1.0, color="gray", lw=0.6, ls="--", label="uniform weight (1)")
    left.set_xticks(classes, [f"{n}\n{c} pts" for n, c in zip(names, count)],
                    fontsize=6.5, rotation=0 if not class_names else 30)
    left.set(xlim=(-0.6, num_classes - 0.4), ylabel="weight (mean 1 over the points)",
             title=f"{name}: weights per true class (n = {len(weight)})")
    left.legend(fontsize=7, loc="upper right")

    image = right.imshow(np.nan_to_num(confusion), cmap="Blues", vmin=0.0, vmax=1.0)
    for i in classes:
        for j in classes:
            if counts[i, j]:
                value = confusion[i, j]
                right.text(j, i, f"{value:.2f}".lstrip("0") if value < 1 else "1",
                           ha="center", va="center", fontsize=6,
                           color="white" if value > 0.6 else "black")
    right.set_xticks(classes, names, fontsize=6.5, rotation=90 if class_names else 0)
    right.set_yticks(classes, names, fontsize=6.5)
    right.set(xlabel="predicted class on the adversarial example", ylabel="true class",
              title="adversarial confusion (rows sum to 1)")
    figure.colorbar(image, ax=right, fraction=0.046, pad=0.02)
    caption = (
        f"Left: the weights {name} gives each point (the weights that multiply the loss of "
        "the point's adversarial example in training, normalised to mean 1 over the "
        f"{len(weight)} points), per true class: boxes span the quartiles, whiskers 1.5 IQR, "
        "dots are the points, the dash is the class mean. Right: the model's predictions on "
        "the same adversarial examples (its own training attack), each row normalised; the "
        "diagonal is the class's robust accuracy. Correlation over classes between the mean "
        f"weight and the adversarial error rate (1 - diagonal): {correlation:+.2f}.")
    _caption(figure, caption, width=170)
    return figure, {"classes": classes, "weight": weight, "y": labels,
                    "prediction": prediction, "count": count, "counts": counts,
                    "confusion": confusion, "class_mean": stats["mean"],
                    "class_median": stats["median"], "class_q25": stats["q25"],
                    "class_q75": stats["q75"], "class_error": error,
                    "weight_error_correlation": correlation, "caption": caption}


def weight_extremes_grid(
    model,
    x,
    y,
    *,
    k: int = 8,
    inspected: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[Figure, dict[str, Any]]:
    """The ``k`` lowest- and ``k`` highest-weighted images, with label, prediction, weight.

    Meant for training images: what the learned reweighting turns down and up. Each image
    is titled with its true class, the class predicted on its adversarial example (the
    model's own training attack; red when wrong) and its weight on the
    ``model.inspect_weights`` scale (mean 1 over the ``n`` points given). Ties are broken
    by index (a stable sort).

    Args:
        model: A trained ``keras_mwat`` model.
        x: Images, shape (n, H, W) or (n, H, W, C) with C = 1 or 3.
        y: Integer labels (n,) or one-hot labels (n, K).
        k: Images per row (at most n // 2).
        inspected: ``inspect_with_kappa(model, x, y)`` to reuse; computed when None.
        class_names: Names of the classes (default their indices).

    Returns:
        ``(figure, data)``; ``data`` holds ``lowest`` (indices into ``x`` of the k lowest
        weights, lowest first), ``highest`` (the k highest, highest first), ``weight``,
        ``y``, ``prediction`` (or None) and ``caption``.

    Example:
    ```python
    figure, data = weight_extremes_grid(model, x_train[:500], y_train[:500], k=8)
    data["lowest"], data["highest"]
    ```
    """
    import keras_mwat as km

    info, weight, labels = _inspected_arrays(model, x, y, inspected)
    k = km.validation.check_int(k, "k", minimum=1)
    if 2 * k > len(weight):
        raise ValueError(f"`k` must be at most half the number of points ({len(weight)}), "
                         f"got k={k}.")
    images = np.asarray(x)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) != len(weight):
        raise ValueError(f"`x` must hold {len(weight)} images of shape (H, W), (H, W, 1) or "
                         f"(H, W, 3), got an array of shape {np.shape(x)}.")
    prediction = info.get("prediction")
    lowest = np.argsort(weight, kind="stable")[:k]
    # Highest first; among equal weights the lower index first (a stable sort of -weight).
    highest = np.argsort(-weight, kind="stable")[:k]

    name = type(model).__name__
    figure = _new_figure(1.25 * k + 0.6, 3.5)
    axes = figure.subplots(2, k, squeeze=False)
    for row, (indices, title) in enumerate(((lowest, "lowest"), (highest, "highest"))):
        for column, index in enumerate(indices):
            ax = axes[row, column]
            ax.imshow(images[index], cmap="gray" if images.ndim == 3 else None,
                      vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            true = _class_labels([labels[index]], class_names)[0]
            text = f"y {true}"
            wrong = False
            if prediction is not None:
                predicted = _class_labels([prediction[index]], class_names)[0]
                wrong = int(prediction[index]) != int(labels[index])
                text += f"\nadv {predicted}"
            ax.set_title(f"{text}\nw {weight[index]:.2f}", fontsize=6.5,
                         color="tab:red" if wrong else "black")
        axes[row, 0].set_ylabel(f"{title} {k}", fontsize=8)
    figure.suptitle(f"{name}: the {k} lowest- (top) and highest-weighted (bottom) of "
                    f"{len(weight)} images", fontsize=9)
    caption = (f"Weights on the inspect_weights scale (mean 1 over the {len(weight)} images). "
               "y: true class; adv: class predicted on the image's adversarial example "
               "(the model's own training attack; red when it differs from y).")
    _caption(figure, caption, width=int(22 * k))
    return figure, {"lowest": lowest, "highest": highest, "weight": weight, "y": labels,
                    "prediction": prediction, "caption": caption}


def load_weight_history(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``km.callbacks.WeightHistory`` file.

    Args:
        path: The ``.npz`` file (e.g. ``<run>/mwat/seed0/weight_history.npz``).

    Returns:
        A dict of NumPy arrays (``epoch``, ``y``, ``index`` and
        ``keras_mwat.callbacks.WEIGHT_HISTORY_KEYS``).

    Example:
    ```python
    history = load_weight_history("runs/x/mwat/seed0/weight_history.npz")
    history["weight_adv"].shape     # (epochs, 500)
    ```
    """
    with np.load(Path(path)) as saved:
        return {key: saved[key] for key in saved.files}


def _quantiles(values: np.ndarray, chosen: np.ndarray, q) -> np.ndarray:
    """Quantiles ``q`` of each row of ``values`` over its ``chosen`` entries (NaN if none)."""
    out = np.full((len(values), len(q)), np.nan)
    for row, (v, c) in enumerate(zip(values, chosen)):
        if c.any():
            out[row] = np.quantile(v[c], q)
    return out


def weights_over_epochs(history: dict[str, np.ndarray] | str | Path,
                        *, quantiles: tuple[float, float] = (0.25, 0.75),
                        ) -> tuple[Figure, dict[str, Any]]:
    """The learned weights of a fixed probe set over the epochs, for clean and adversarial inputs.

    From a ``km.callbacks.WeightHistory`` record: left, the weight the method's weight
    function gives each clean input; right, the weight it gives each input's adversarial
    example (see ``WeightHistory`` for the exact meaning). In each panel the points are
    grouped by whether the model classified that input correctly at that epoch (clean
    predictions on the left, adversarial ones on the right): median per group and epoch,
    with the ``quantiles`` band, and the median of all points. The grouping asks the
    question the reweighting is about: does the weight move to the points the model gets
    wrong, and when? (The per-class view is ``class_weight_distributions``.)

    Args:
        history: A ``WeightHistory`` file or ``load_weight_history``'s dict.
        quantiles: Lower and upper quantile of the bands.

    Returns:
        ``(figure, data)``; ``data["epoch"]`` (1-based), and for ``"clean"`` and
        ``"adv"``: a dict with ``median``, ``low``, ``high`` (per group "correct",
        "wrong", "all": arrays of shape (epochs,)), ``count`` (per group) and
        ``accuracy`` (fraction correct per epoch); ``training_is`` ("clean", "adv" or
        None: which input's weights equal training's); ``caption``.

    Example:
    ```python
    figure, data = weights_over_epochs("runs/x/mwat/seed0/weight_history.npz")
    data["adv"]["median"]["wrong"]
    ```
    """
    if not isinstance(history, dict):
        history = load_weight_history(history)
    low_q, high_q = (float(q) for q in quantiles)
    if not 0.0 <= low_q < high_q <= 1.0:
        raise ValueError(f"`quantiles` must be (low, high) with 0 <= low < high <= 1, got "
                         f"{quantiles!r}.")
    labels = np.asarray(history["y"]).astype(np.int64)
    epoch = np.asarray(history["epoch"]).astype(np.int64) + 1
    data: dict[str, Any] = {"epoch": epoch, "quantiles": (low_q, high_q)}
    for kind in ("clean", "adv"):
        weight = np.asarray(history[f"weight_{kind}"], dtype=np.float64)
        correct = np.asarray(history[f"pred_{kind}"]) == labels[None, :]
        groups = {"correct": correct, "wrong": ~correct, "all": np.ones_like(correct)}
        entry: dict[str, Any] = {"median": {}, "low": {}, "high": {}, "count": {}}
        for group, chosen in groups.items():
            values = _quantiles(weight, chosen, [0.5, low_q, high_q])
            entry["median"][group], entry["low"][group], entry["high"][group] = values.T
            entry["count"][group] = chosen.sum(axis=1)
        entry["accuracy"] = correct.mean(axis=1)
        data[kind] = entry
    training = np.asarray(history["weight"], dtype=np.float64)
    data["training_is"] = next(
        (kind for kind in ("clean", "adv")
         if np.allclose(training, history[f"weight_{kind}"], rtol=1e-4, atol=1e-6)), None)

    figure = _new_figure(11.0, 4.0)
    axes = figure.subplots(1, 2, sharey=True)
    colours = {"correct": "tab:blue", "wrong": "tab:red", "all": "k"}
    titles = {"clean": "clean inputs", "adv": "adversarial examples"}
    for ax, kind in zip(axes, ("clean", "adv")):
        entry = data[kind]
        for group in ("correct", "wrong"):
            ax.fill_between(epoch, entry["low"][group], entry["high"][group],
                            color=colours[group], alpha=0.15, lw=0)
            ax.plot(epoch, entry["median"][group], "-o", color=colours[group], ms=3,
                    label=f"{'correctly' if group == 'correct' else 'wrongly'} classified "
                          f"(last epoch: {entry['count'][group][-1]})")
        ax.plot(epoch, entry["median"]["all"], "--", color="k", lw=1, label="all points")
        ax.axhline(1.0, color="gray", lw=0.5)
        suffix = " = training's weights" if data["training_is"] == kind else ""
        ax.set(xlabel="epoch", title=f"{titles[kind]}{suffix}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        twin = ax.twinx()
        twin.plot(epoch, entry["accuracy"], ":", color="0.5", lw=1)
        twin.set_ylim(0, 1)
        twin.set_ylabel("accuracy on the probe (dotted)", fontsize=7, color="0.4")
        twin.tick_params(labelsize=6, colors="0.4")
    axes[0].set_ylabel("weight (mean 1 over the probe set)")
    caption = (
        f"The weights of a fixed probe of {len(labels)} training points after each epoch "
        "(km.callbacks.WeightHistory; its own attack seed, the same every epoch; mean 1 over "
        "the probe at each epoch). Left: the weight of each clean input; right: that of its "
        "adversarial example (the model's training attack at that epoch), both from the "
        "method's weight function. Points grouped by whether the model classified them "
        f"correctly at that epoch: median and {low_q:g}-{high_q:g} quantile band; dashed: "
        "median of all points; dotted (right axis): accuracy on the probe.")
    _caption(figure, caption)
    data["caption"] = caption
    return figure, data


# ------------------------------------------------------------ comparing methods
def accuracy_scatter(
    rows: Sequence[dict], *, checkpoint: str = "last"
) -> tuple[Figure, dict[str, Any]]:
    """Clean against worst-case robust accuracy, one point per method (mean over seeds).

    Args:
        rows: ``compare`` result rows (the ``result.json`` dicts or ``compare.json``'s
            ``rows``); each needs ``method``, ``clean`` and ``worst_case`` (or
            ``best.clean`` / ``best.worst_case`` for ``checkpoint="best"``).
        checkpoint: "last" (the model after the last epoch) or "best" (the
            best-validation checkpoint, rows without it are skipped).

    Returns:
        ``(figure, data)``; ``data["methods"]`` maps each method to ``clean_mean``,
        ``clean_std``, ``robust_mean``, ``robust_std`` (sample standard deviation over
        seeds, ddof=1; 0 for one seed) and ``seeds``; ``data["caption"]``.

    Example:
    ```python
    rows = load_rows("runs/20250101-120000")
    figure, data = accuracy_scatter(rows)
    data["methods"]["mwat"]["robust_mean"]
    ```
    """
    if checkpoint not in ("last", "best"):
        raise ValueError(f"`checkpoint` must be 'last' or 'best', got {checkpoint!r}.")
    groups = _group(rows)
    summary: dict[str, dict[str, Any]] = {}
    for method, group in groups.items():
        chosen = [row.get("best") if checkpoint == "best" else row for row in group]
        chosen = [entry for entry in chosen if entry]
        if not chosen:
            continue
        for entry in chosen:
            missing = {"clean", "worst_case"} - set(entry)
            if missing:
                raise ValueError(f"A '{method}' row lacks {sorted(missing)}.")
        clean_mean, clean_std = _mean_std([entry["clean"] for entry in chosen])
        robust_mean, robust_std = _mean_std([entry["worst_case"] for entry in chosen])
        seeds = [row.get("seed") for row in group
                 if checkpoint == "last" or row.get("best")]
        summary[method] = {"clean_mean": clean_mean, "clean_std": clean_std,
                           "robust_mean": robust_mean, "robust_std": robust_std,
                           "seeds": seeds}
    if not summary:
        raise ValueError(f"No row has the '{checkpoint}' checkpoint's accuracies.")

    figure = _new_figure(6.5, 5.0)
    ax = figure.subplots()
    for method, entry in summary.items():
        colour, marker = _style(method, list(groups))
        ax.errorbar(entry["clean_mean"], entry["robust_mean"], xerr=entry["clean_std"],
                    yerr=entry["robust_std"], fmt=marker, color=colour, ms=9 if marker == "*"
                    else 6, capsize=3, label=f"{method} ({len(entry['seeds'])} seeds)")
        ax.annotate(method, (entry["clean_mean"], entry["robust_mean"]), fontsize=7,
                    xytext=(5, 4), textcoords="offset points")
    ax.set(xlabel="clean accuracy", ylabel="worst-case robust accuracy",
           title=f"Clean vs robust accuracy ({checkpoint} checkpoint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    source = [row.get("best") or {} for row in rows] if checkpoint == "best" else rows
    first = next((row for row in source if isinstance(row.get("robustness"), dict)), None)
    setting = ""
    if first is not None:
        report = first["robustness"]
        attacks = ", ".join(str(a.get("name")) for a in report.get("attacks", []))
        setting = (f" Worst case per sample over {attacks or 'the evaluation attacks'}"
                   f" in cascade, {report.get('norm', '')} eps = {report.get('eps', '?')},"
                   f" {report.get('n', '?')} test points.")
    which = (" Best checkpoint: the epoch with the highest PGD-10 robust accuracy on the "
             "validation split (compare's selection)." if checkpoint == "best"
             else " Models after the last epoch.")
    caption = ("Mean over seeds; error bars: sample standard deviation over seeds "
               "(none for one seed)." + which + setting)
    _caption(figure, caption, width=110)
    return figure, {"methods": summary, "caption": caption, "checkpoint": checkpoint}


def _mean_curves(histories: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean over seeds of ``history[key]`` per epoch (NaN-padded runs), and the counts."""
    curves = [np.asarray(h[key], dtype=np.float64) for h in histories if key in h]
    if not curves:
        return None
    length = max(len(c) for c in curves)
    stacked = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        stacked[i, : len(curve)] = curve
    count = np.sum(~np.isnan(stacked), axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.nansum(stacked, axis=0) / np.maximum(count, 1)
    return np.where(count > 0, mean, np.nan), count


def training_curves(
    rows: Sequence[dict], *, keys: Sequence[str] = ("robust_accuracy", "loss")
) -> tuple[Figure, dict[str, Any]]:
    """Per method, training and validation curves per epoch, mean over seeds.

    One panel per key: the training value (solid) and ``val_<key>`` (dashed), one colour
    per method. Runs of different lengths are averaged over the seeds that reached the
    epoch.

    Args:
        rows: ``compare`` result rows with a ``history`` (Keras's history dict).
        keys: History keys to draw (default robust accuracy and loss).

    Returns:
        ``(figure, data)``; ``data["methods"]`` maps each method to ``{key: mean array}``
        for every key and ``val_<key>`` present, plus ``epoch`` (1-based) and ``seeds``;
        ``data["caption"]``.

    Example:
    ```python
    figure, data = training_curves(load_rows("runs/20250101-120000"))
    data["methods"]["mwat"]["val_robust_accuracy"]
    ```
    """
    groups = _group(rows)
    summary: dict[str, dict[str, Any]] = {}
    for method, group in groups.items():
        histories = [row["history"] for row in group if isinstance(row.get("history"), dict)]
        if not histories:
            continue
        entry: dict[str, Any] = {"seeds": [row.get("seed") for row in group
                                           if isinstance(row.get("history"), dict)]}
        length = 0
        for key in keys:
            for name in (key, f"val_{key}"):
                result = _mean_curves(histories, name)
                if result is not None:
                    entry[name] = result[0]
                    length = max(length, len(result[0]))
        entry["epoch"] = np.arange(1, length + 1)
        summary[method] = entry
    if not summary:
        raise ValueError("No row has a training history.")

    figure = _new_figure(5.0 * len(keys), 3.8)
    axes = np.atleast_1d(figure.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        for method, entry in summary.items():
            colour, marker = _style(method, list(groups))
            for name, style in ((key, "-"), (f"val_{key}", "--")):
                if name in entry:
                    epochs = np.arange(1, len(entry[name]) + 1)
                    ax.plot(epochs, entry[name], style, color=colour, marker=marker, ms=3,
                            label=f"{method} {'validation' if name != key else 'training'}")
        ax.set(xlabel="epoch", ylabel=key, title=f"{key} (solid: training, dashed: validation)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    caption = ("Mean over seeds per epoch (over the seeds that reached the epoch). Training "
               "values are running means over the epoch's batches, robust accuracy on the "
               "training attack's examples (under any radius warm-up); validation values are "
               "measured after the epoch on the validation split under the model's attack at "
               "full radius. Training loss is each method's own (weighted) objective, so it is "
               "not comparable across methods; validation loss is the cross-entropy on the "
               "validation split's adversarial examples, the same for every method.")
    _caption(figure, caption, width=int(75 * len(keys)))
    return figure, {"methods": summary, "caption": caption}


# -------------------------------------------------------------------- the command
def load_rows(results_dir: str | Path) -> list[dict]:
    """All ``result.json`` rows under ``results_dir`` (any depth), sorted by method and seed.

    Unreadable files (e.g. one being written) are skipped with a printed note.

    Args:
        results_dir: A ``keras-mwat compare`` run directory.

    Returns:
        The rows, as dicts.

    Example:
    ```python
    rows = load_rows("runs/20250101-120000")
    ```
    """
    rows = []
    for path in sorted(Path(results_dir).rglob("result.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            print(f"figures: skipped {path} ({error})")
    return sorted(rows, key=lambda r: (_method_rank(str(r.get("method"))), r.get("seed", 0)))


def _save(figure: Figure, path: Path) -> Path:
    """Writes ``figure`` as a PNG with a 256-colour palette (a third of the RGBA size; the
    figures are flat colours on white, so they look the same)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", facecolor="white")
    buffer.seek(0)
    try:
        from PIL import Image  # a dependency of matplotlib
    except ImportError:  # pragma: no cover
        path.write_bytes(buffer.getvalue())
        return path
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
            path, format="PNG", optimize=True)
    return path


#: The meta set ``keras-mwat compare`` holds out of the embedded data (its
#: ``EMBEDDED_META_SIZE``, drawn with seed 0).
COMPARE_META_SIZE = 500
#: The meta set ``keras-mwat compare`` holds out of a full dataset (its ``META_SIZE``).
FULL_META_SIZE = 1000


def _needs_meta_set(model) -> bool:
    """Whether ``inspect_weights`` needs a meta set the model lacks (non-parametric MWAT).

    MWAT's weight network gives the weights without one; the non-parametric variant's
    weights are alignments with the gradient of the meta loss.
    """
    return (not getattr(model, "learns_weight_net", True)
            and not getattr(model, "has_meta_set", True))


def _load_dataset(dataset: str, data_dir: str | Path | None):
    """The dataset of a compare run, split as ``keras-mwat compare`` splits it."""
    import keras_mwat as km

    if dataset == "embedded":
        return km.data.load_embedded(seed=0), COMPARE_META_SIZE
    if dataset == "fashion_mnist":
        # compare's split: 1,000 stratified validation images (seed 0), then a meta set.
        return (km.data.load_fashion_mnist(path=data_dir, validation_size=1000, seed=0),
                FULL_META_SIZE)
    raise ValueError(f"`dataset` must be 'embedded' or 'fashion_mnist', got {dataset!r}.")


def _subset(x, y, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of ``n`` points (in their order), or all of them."""
    x, y = np.asarray(x), np.asarray(y)
    if n < len(x):
        keep = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
        x, y = x[keep], y[keep]
    return x, y


#: The figures drawn from a saved MWAT model (the others come from the run's results).
MODEL_FIGURES = ("weight_vs_margin", "class_mean_weights", "class_weight_distributions",
                 "weight_extremes_grid")


def make_figures(
    results_dir: str | Path,
    out_dir: str | Path,
    model_path: str | Path | None = None,
    data: tuple[Any, Any] | None = None,
    n: int = 500,
    seed: int = 0,
    meta_data: tuple[Any, Any] | None = None,
    train_data: tuple[Any, Any] | None = None,
    dataset: str = "embedded",
    data_dir: str | Path | None = None,
    k: int = 8,
) -> list[Path]:
    """Writes the figures of a compare run as PNGs; skips those whose inputs are missing.

    * ``accuracy_scatter.png`` and ``training_curves.png`` from every ``result.json`` under
      ``results_dir``;
    * ``weight_vs_margin.png``, ``class_mean_weights.png`` and
      ``class_weight_distributions.png`` from the model at ``model_path`` (default
      ``results_dir/mwat/seed0/model.keras``, else that of the first MWAT variant
      ``results_dir/mwat+.../seed0``) on ``n`` points of ``data`` (the test split);
    * ``weight_extremes_grid.png`` from the same model on ``n`` points of ``train_data``
      (the training split);
    * ``weights_over_epochs.png`` from ``weight_history.npz`` beside that model (written
      by ``keras-mwat compare``/``train`` for the methods with learned weights).

    A skipped figure is reported with a printed note.

    A saved model does not carry its held-out meta set. MWAT (BiLAW) does not need it to
    show its weights (the weight network is saved); the non-parametric variant
    (``MWATNonParametricModel``) computes its weights from the meta gradient, so it gets
    ``meta_data``, or by default, with the default ``data``, the meta set that
    ``keras-mwat compare`` holds out of ``dataset`` (500 training digits of the embedded
    data, 1,000 Fashion-MNIST images; seed 0).

    Args:
        results_dir: A ``keras-mwat compare`` run directory.
        out_dir: Where to write the PNGs (created if needed).
        model_path: A saved ``.keras`` training model (default: MWAT, seed 0, of the run).
        data: ``(x, y)`` to inspect the weights on (default: the test split of
            ``dataset``).
        n: Number of points of ``data`` and of ``train_data`` to use (a fixed random subset
            when fewer than all).
        seed: Seed of the subsets and of the inspection attack's random start
            (``keras.utils.set_random_seed`` before loading the model).
        meta_data: ``(x, y)`` meta set for a model whose weights need one to be computed
            (the non-parametric variant); unused by the others.
        train_data: ``(x, y)`` training images for the extremes grid (default: the training
            split ``keras-mwat compare`` trains MWAT on: ``dataset``'s, without the meta
            set).
        dataset: The run's data, for the defaults of ``data``, ``train_data`` and
            ``meta_data``: "embedded" or "fashion_mnist" (``km.data.load_fashion_mnist``,
            read from ``data_dir``, default Debian's folder).
        data_dir: Fashion-MNIST's folder (None: ``/usr/share/datasets/fashion-mnist``).
        k: Images per row of the extremes grid.

    Returns:
        The paths written, in the order of ``FIGURE_NAMES``.

    Example:
    ```python
    paths = make_figures("runs/20250101-120000", "docs/img")
    ```
    """
    import keras

    import keras_mwat as km

    n = km.validation.check_int(n, "n", minimum=1)
    k = km.validation.check_int(k, "k", minimum=1)
    if dataset not in ("embedded", "fashion_mnist"):
        raise ValueError(f"`dataset` must be 'embedded' or 'fashion_mnist', got {dataset!r}.")
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    loaded: dict[str, Any] = {}

    def splits():
        if "data" not in loaded:
            loaded["data"], loaded["meta_size"] = _load_dataset(dataset, data_dir)
        return loaded["data"]

    if model_path is None:
        # MWAT with the defaults, else the first MWAT variant ("mwat+key=value") of the run.
        candidates = [results_dir / "mwat"] + sorted(results_dir.glob("mwat+*"))
        model_path = next((c / "seed0" / "model.keras" for c in candidates
                           if (c / "seed0" / "model.keras").exists()),
                          results_dir / "mwat" / "seed0" / "model.keras")
    model_path = Path(model_path)
    skipped = ", ".join(MODEL_FIGURES)
    if not model_path.exists():
        print(f"figures: skipped {skipped} (no model at {model_path})")
    else:
        keras.utils.set_random_seed(seed)
        model = keras.models.load_model(model_path)
        if not hasattr(model, "inspect_weights"):
            print(f"figures: skipped {skipped} ({model_path} is not a keras_mwat training "
                  "model)")
        else:
            if _needs_meta_set(model):
                if meta_data is None and data is None:
                    meta_data = splits().with_holdout(
                        meta=loaded["meta_size"], early_stopping=0, seed=0).meta
                if meta_data is not None:
                    model.set_meta_data(meta_data)
            if _needs_meta_set(model):
                print(f"figures: skipped {skipped} ({model_path} computes its weights from a "
                      "meta set: pass meta_data)")
            else:
                names = splits().class_names if dataset != "embedded" else None
                x, y = _subset(*(data if data is not None else splits().test), n, seed)
                inspected = inspect_with_kappa(model, x, y)
                figure, _ = weight_vs_margin(model, x, y, inspected=inspected)
                written["weight_vs_margin"] = _save(figure, out_dir / "weight_vs_margin.png")
                figure, _ = class_mean_weights(model, x, y, inspected=inspected)
                written["class_mean_weights"] = _save(figure,
                                                      out_dir / "class_mean_weights.png")
                if inspected["prediction"] is None:
                    print("figures: skipped class_weight_distributions (no adversarial "
                          "predictions)")
                else:
                    figure, _ = class_weight_distributions(model, x, y, inspected=inspected,
                                                           class_names=names)
                    written["class_weight_distributions"] = _save(
                        figure, out_dir / "class_weight_distributions.png")
                if train_data is None:
                    train_data = splits().with_holdout(
                        meta=loaded["meta_size"], early_stopping=0, seed=0).train
                x, y = _subset(*train_data, n, seed)
                if 2 * k > len(y):
                    print(f"figures: skipped weight_extremes_grid ({len(y)} training points, "
                          f"fewer than 2k = {2 * k})")
                else:
                    figure, _ = weight_extremes_grid(model, x, y, k=k, class_names=names)
                    written["weight_extremes_grid"] = _save(
                        figure, out_dir / "weight_extremes_grid.png")

    history_path = model_path.parent / "weight_history.npz"
    if not history_path.exists():
        print(f"figures: skipped weights_over_epochs (no {history_path}: keras-mwat compare "
              "and train write it for the methods with learned weights)")
    else:
        figure, _ = weights_over_epochs(history_path)
        written["weights_over_epochs"] = _save(figure, out_dir / "weights_over_epochs.png")

    rows = load_rows(results_dir)
    if not rows:
        print(f"figures: skipped accuracy_scatter and training_curves (no result.json under "
              f"{results_dir})")
    else:
        try:
            figure, _ = accuracy_scatter(rows)
            written["accuracy_scatter"] = _save(figure, out_dir / "accuracy_scatter.png")
        except ValueError as error:
            print(f"figures: skipped accuracy_scatter ({error})")
        try:
            figure, _ = training_curves(rows)
            written["training_curves"] = _save(figure, out_dir / "training_curves.png")
        except ValueError as error:
            print(f"figures: skipped training_curves ({error})")
    return [written[name] for name in FIGURE_NAMES if name in written]


def run(
    results_dir: str | Path,
    out_dir: str | Path,
    model_path: str | Path | None = None,
    n: int = 500,
    seed: int = 0,
    dataset: str = "embedded",
    data_dir: str | Path | None = None,
    k: int = 8,
) -> list[Path]:
    """``keras-mwat figures``: ``make_figures`` on the run's data; prints the paths.

    Args:
        results_dir: A ``keras-mwat compare`` run directory.
        out_dir: Where to write the PNGs.
        model_path: The model to inspect (default ``results_dir/mwat/seed0/model.keras``).
        n: Number of test (and training) points to inspect the weights on.
        seed: Seed of the subsets and of the inspection attack.
        dataset: The run's data: "embedded" or "fashion_mnist".
        data_dir: Fashion-MNIST's folder (default Debian's).
        k: Images per row of the extremes grid.

    Returns:
        The paths written.

    Example:
    ```python
    run("runs/20250101-120000", "docs/img")
    ```
    """
    paths = make_figures(results_dir, out_dir, model_path=model_path, n=n, seed=seed,
                         dataset=dataset, data_dir=data_dir, k=k)
    for path in paths:
        print(f"wrote {path}")
    if not paths:
        print("figures: nothing written")
    return paths
