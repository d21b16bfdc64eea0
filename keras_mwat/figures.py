"""Figures of a ``keras-mwat compare`` run: what MWAT learned, and how the methods compare.

Four pictures (issue 8), drawn with matplotlib's Agg canvas (no display needed):

* ``weight_vs_margin``: the learned weight against the Definition 2.2 margin on the model's
  own adversarial examples, next to MAIL's, WMMR's and GAIRAT's fixed weightings;
* ``class_mean_weights``: the mean learned weight per class;
* ``accuracy_scatter``: clean against worst-case robust accuracy, one point per method;
* ``training_curves``: robust accuracy and loss per epoch, per method.

Every plotting function returns ``(figure, data)``: the ``matplotlib.figure.Figure`` and a
dict of the NumPy arrays it plotted, so the numbers behind a picture can be checked.
``make_figures`` writes all four PNGs from a results directory; ``run`` is the command-line
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

try:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as error:  # pragma: no cover - matplotlib is in the docs and dev extras
    raise ImportError(
        "keras_mwat.figures needs matplotlib: `pip install matplotlib` (or the `docs` or "
        "`dev` extra of keras-mwat)."
    ) from error

from keras_mwat import margins, weighting

__all__ = [
    "FIGURE_NAMES",
    "accuracy_scatter",
    "binned_mean",
    "class_mean_weights",
    "inspect_with_kappa",
    "load_rows",
    "logits_with_margin",
    "make_figures",
    "run",
    "training_curves",
    "weight_vs_margin",
]

#: File names (without ``.png``) that ``make_figures`` writes.
FIGURE_NAMES = ("weight_vs_margin", "class_mean_weights", "accuracy_scatter", "training_curves")

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
    """``model.inspect_weights(x, y)`` plus GAIRAT's kappa of the same adversarial examples.

    ``inspect_weights`` runs the model's training attack and returns ``margin``
    (Definition 2.2 on the adversarial logits), ``weight`` (normalised over the points, as in
    training) and ``y``. To get each point's kappa (number of attack iterates classified
    correctly), the attack is run a second time from the same state of its random
    generator, with ``return_kappa=True``; the margins of that run are checked to equal
    those of ``inspect_weights``, so ``kappa[i]`` belongs to the very adversarial example
    behind ``margin[i]``. The generator is left as ``inspect_weights`` alone would leave it.

    Args:
        model: A ``keras_mwat`` training model (``AdversarialTrainingModel``).
        x: Inputs, shape (n, ...).
        y: Integer labels (n,) or one-hot labels (n, K).

    Returns:
        A dict of NumPy arrays ``margin``, ``weight``, ``y`` and ``kappa`` (int, (n,); None
        when the attack has no ``num_steps`` or cannot count kappa, e.g. APGD), and
        ``num_steps`` (the attack's K, or None).

    Example:
    ```python
    info = inspect_with_kappa(model, x_test[:500], y_test[:500])
    info["margin"], info["weight"], info["kappa"]
    ```
    """
    import tensorflow as tf

    generator = model.attack.seed_generator
    before = np.array(generator.state.numpy())
    inspected = dict(model.inspect_weights(x, y))
    num_steps = getattr(model.attack, "num_steps", None)
    inspected["num_steps"] = None if num_steps is None else int(num_steps)
    inspected["kappa"] = None
    if num_steps is None:
        return inspected
    after = np.array(generator.state.numpy())
    generator.state.assign(before)
    try:
        inputs = tf.convert_to_tensor(x)
        labels = tf.convert_to_tensor(inspected["y"], dtype=tf.int32)
        logits_clean = model.classifier(inputs, training=False)
        x_adv, kappa = model.attack.perturb(
            model.classifier_fn(training=False), inputs, labels, seed=generator,
            loss_fn=model.attack_loss(inputs, labels, logits_clean), return_kappa=True,
            strength=tf.convert_to_tensor(model.attack_strength),
            init=model.objective.attack_init)
        margin = _numpy(margins.probability_margin(labels, model.classifier(x_adv,
                                                                            training=False)))
    except (ValueError, TypeError, NotImplementedError) as error:
        print(f"figures: no kappa from {type(model.attack).__name__} ({error})")
        return inspected
    finally:
        generator.state.assign(after)
    if np.allclose(margin, inspected["margin"], atol=1e-5):
        inspected["kappa"] = _numpy(kappa).astype(np.int64)
    else:
        print("figures: the kappa run did not reproduce the inspected adversarial examples; "
              "GAIRAT is drawn on its own kappa axis only")
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
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


#: The meta set ``keras-mwat compare`` holds out of the embedded data (its
#: ``EMBEDDED_META_SIZE``, drawn with seed 0).
COMPARE_META_SIZE = 500


def _needs_meta_set(model) -> bool:
    """Whether ``inspect_weights`` needs a meta set the model lacks (non-parametric MWAT).

    MWAT's weight network gives the weights without one; the non-parametric variant's
    weights are alignments with the gradient of the meta loss.
    """
    return (not getattr(model, "learns_weight_net", True)
            and not getattr(model, "has_meta_set", True))


def make_figures(
    results_dir: str | Path,
    out_dir: str | Path,
    model_path: str | Path | None = None,
    data: tuple[Any, Any] | None = None,
    n: int = 500,
    seed: int = 0,
    meta_data: tuple[Any, Any] | None = None,
) -> list[Path]:
    """Writes the figures of a compare run as PNGs; skips those whose inputs are missing.

    ``accuracy_scatter.png`` and ``training_curves.png`` come from every ``result.json``
    under ``results_dir``; ``weight_vs_margin.png`` and ``class_mean_weights.png`` from the
    model at ``model_path`` (default ``results_dir/mwat/seed0/model.keras``, else that of the
    first MWAT variant ``results_dir/mwat+.../seed0``) on ``n`` points
    of ``data``. A skipped figure is reported with a printed note.

    A saved model does not carry its held-out meta set. MWAT (BiLAW) does not need it to
    show its weights (the weight network is saved); the non-parametric variant
    (``MWATNonParametricModel``) computes its weights from the meta gradient, so it gets
    ``meta_data``, or by default, with the default ``data``, the meta set that
    ``keras-mwat compare`` holds out of the embedded data (500 training digits, seed 0).

    Args:
        results_dir: A ``keras-mwat compare`` run directory.
        out_dir: Where to write the PNGs (created if needed).
        model_path: A saved ``.keras`` training model (default: MWAT, seed 0, of the run).
        data: ``(x, y)`` to inspect the weights on (default: the embedded test split,
            ``keras_mwat.data.load_embedded().test``).
        n: Number of points of ``data`` to use (a fixed random subset when fewer than all).
        seed: Seed of the subset and of the inspection attack's random start
            (``keras.utils.set_random_seed`` before loading the model).
        meta_data: ``(x, y)`` meta set for a model whose weights need one to be computed
            (the non-parametric variant); unused by the others.

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
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    if model_path is None:
        # MWAT with the defaults, else the first MWAT variant ("mwat+key=value") of the run.
        candidates = [results_dir / "mwat"] + sorted(results_dir.glob("mwat+*"))
        model_path = next((c / "seed0" / "model.keras" for c in candidates
                           if (c / "seed0" / "model.keras").exists()),
                          results_dir / "mwat" / "seed0" / "model.keras")
    model_path = Path(model_path)
    if not model_path.exists():
        print(f"figures: skipped weight_vs_margin and class_mean_weights (no model at "
              f"{model_path})")
    else:
        keras.utils.set_random_seed(seed)
        model = keras.models.load_model(model_path)
        if not hasattr(model, "inspect_weights"):
            print(f"figures: skipped weight_vs_margin and class_mean_weights ({model_path} "
                  "is not a keras_mwat training model)")
        else:
            if _needs_meta_set(model):
                if meta_data is None and data is None:
                    meta_data = km.data.load_embedded().with_holdout(
                        meta=COMPARE_META_SIZE, early_stopping=0, seed=0).meta
                if meta_data is not None:
                    model.set_meta_data(meta_data)
            if _needs_meta_set(model):
                print(f"figures: skipped weight_vs_margin and class_mean_weights ({model_path} "
                      "computes its weights from a meta set: pass meta_data)")
            else:
                x, y = data if data is not None else km.data.load_embedded().test
                x, y = np.asarray(x), np.asarray(y)
                if n < len(x):
                    keep = np.sort(np.random.default_rng(seed).choice(len(x), n,
                                                                      replace=False))
                    x, y = x[keep], y[keep]
                inspected = inspect_with_kappa(model, x, y)
                figure, _ = weight_vs_margin(model, x, y, inspected=inspected)
                written["weight_vs_margin"] = _save(figure, out_dir / "weight_vs_margin.png")
                figure, _ = class_mean_weights(model, x, y, inspected=inspected)
                written["class_mean_weights"] = _save(figure,
                                                      out_dir / "class_mean_weights.png")

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
) -> list[Path]:
    """``keras-mwat figures``: ``make_figures`` on the embedded test split; prints the paths.

    Args:
        results_dir: A ``keras-mwat compare`` run directory.
        out_dir: Where to write the PNGs.
        model_path: The model to inspect (default ``results_dir/mwat/seed0/model.keras``).
        n: Number of test points to inspect the weights on.
        seed: Seed of the subset and of the inspection attack.

    Returns:
        The paths written.

    Example:
    ```python
    run("runs/20250101-120000", "docs/img")
    ```
    """
    paths = make_figures(results_dir, out_dir, model_path=model_path, n=n, seed=seed)
    for path in paths:
        print(f"wrote {path}")
    if not paths:
        print("figures: nothing written")
    return paths
