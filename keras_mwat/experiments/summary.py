"""Result tables of ``keras-mwat compare``: mean ± std over seeds, paired differences
against a reference method, and the best-against-last checkpoint table.

Example:
```python
from keras_mwat.experiments.summary import summarize
print(summarize(rows, reference="pgd_at"))  # rows: the result.json dicts of a compare
```
"""

from __future__ import annotations

from pathlib import Path


def _read_history(path: Path) -> dict:
    """The per-epoch logs of a ``CSVLogger`` file as ``{name: [values]}`` (no epoch column)."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [name for name in (rows[0] if rows else {}) if name != "epoch"]
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in names}


def _mean_std(values: list[float], signed: bool = False) -> str:
    import numpy as np

    values = np.asarray(values, dtype=float)
    mean = f"{values.mean():+.4f}" if signed else f"{values.mean():.4f}"
    if len(values) < 2:  # no spread from one seed: do not print a misleading ± 0
        return mean
    return f"{mean} ± {values.std(ddof=1):.4f}"


def _reference_method(methods: list[str], reference: str | None) -> str | None:
    if reference is not None:
        return reference if reference in methods else None
    return "pgd_at" if "pgd_at" in methods else None


def summarize(rows: list[dict], reference: str | None = None) -> str:
    """A Markdown table of mean ± std (over seeds) per method, from ``compare`` rows.

    Columns: clean accuracy, the worst-case robust accuracy after each attack of the
    cascade, the final worst case, the paired difference of the worst case against the
    ``reference`` method (default ``pgd_at`` when compared; per seed, then mean ± std over
    the seeds both have: the same seed means the same initial weights and data order, so
    this is less noisy than comparing the two means), the best-validation-checkpoint clean
    and worst case (when evaluated), and the training time in seconds.

    Example:

    ```python
    print(summarize(json.load(open("runs/.../compare.json"))["rows"], reference="pgd_at"))
    ```
    """
    methods = list(dict.fromkeys(row["method"] for row in rows))
    attack_names = [entry["name"] for entry in rows[0]["robustness"]["attacks"]]
    has_best = any("best" in row for row in rows)
    reference = _reference_method(methods, reference)
    baseline = {row["seed"]: row["worst_case"] for row in rows if row["method"] == reference}
    columns = ["method", "seeds", "clean", *attack_names, "worst case"]
    if reference is not None:
        columns.append(f"Δ worst case vs {reference} (paired)")
    if has_best:
        columns += ["best-ckpt clean", "best-ckpt worst case (its suite)"]
    columns += ["train s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for method in methods:
        group = [row for row in rows if row["method"] == method]
        cells = [method, ",".join(str(row["seed"]) for row in group),
                 _mean_std([row["clean"] for row in group])]
        cells += [_mean_std([row[name] for row in group]) for name in attack_names]
        cells.append(_mean_std([row["worst_case"] for row in group]))
        if reference is not None:
            paired = [row["worst_case"] - baseline[row["seed"]] for row in group
                      if row["seed"] in baseline]
            cells.append("–" if method == reference or not paired else
                         _mean_std(paired, signed=True))
        if has_best:
            chosen = [row["best"] for row in group if "best" in row]
            cells += [_mean_std([b["clean"] for b in chosen]) if chosen else "–",
                      _mean_std([b["worst_case"] for b in chosen]) if chosen else "–"]
        cells.append(f"{sum(row['train_seconds'] for row in group) / len(group):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_versus_last(rows: list[dict]) -> str:
    """A Markdown table of each run's best validation checkpoint against its last epoch.

    Per ``compare`` row that has a best checkpoint: the epoch with the highest robust
    validation accuracy (1-based), that accuracy at the best and the last epoch, the test
    clean accuracy of both, and the test robust accuracy of the best checkpoint (under its
    own suite, ``--best-eval``) next to the last epoch's after the first attack of the
    cascade (the column nearest to it). A closing line counts the runs whose best epoch is
    the last one.

    Example:

    ```python
    print(best_versus_last(json.load(open("runs/.../compare.json"))["rows"]))
    ```
    """
    runs = [row for row in rows if "best" in row]
    if not runs:
        return ""
    first = runs[0]["robustness"]["attacks"][0]["name"]
    lines = ["| method | seed | best epoch (of N) | val robust: best / last | "
             f"test clean: best / last | test robust: best (its suite) / last ({first}) |",
             "|---|---|---|---|---|---|"]
    at_last = 0
    for row in runs:
        best, validation = row["best"], row["history"]["robust_val_accuracy"]
        at_last += best["epoch"] == len(validation) - 1
        lines.append(
            f"| {row['method']} | {row['seed']} | {best['epoch'] + 1} of {len(validation)} | "
            f"{best['val_robust']:.3f} / {validation[-1]:.3f} | "
            f"{best['clean']:.3f} / {row['clean']:.3f} | "
            f"{best['worst_case']:.3f} ({best['attacks']}) / {row[first]:.3f} |")
    lines += ["", f"The best validation epoch is the last one in {at_last} of {len(runs)} runs."]
    return "\n".join(lines)
