"""Ours next to the paper: the Markdown report of a ``keras-mwat compare`` directory.

Reads every run ``DIR/<method>/seed<k>/`` (``result.json`` and the ``paper_eval_last.json``
/ ``paper_eval_best.json`` of ``keras-mwat paper-eval``) of one or more compare directories
and one cell of the paper's tables (``paper_tables``), and writes, for the last and for the
best checkpoint:

1. per method, ours (mean ± standard deviation over seeds) next to the paper's clean /
   PGD-20 / AutoAttack accuracy and the difference ours − paper;
2. the paired differences against ``pgd_at`` and against ``trades``: per seed (same seed,
   same initial weights and data order), then mean ± std, next to the paper's difference;
3. the PGD-20 → AA drop (AA minus PGD-20 on the same first ``n_aa`` points), ours and the
   paper's, and how much larger it is than PGD-AT's;

and then the best checkpoint against the last (paired by seed). Numbers are percent. A
cell not there yet says why: ``not run`` (no run folder), ``training`` (a run folder
without ``result.json``), ``not evaluated`` (no ``paper_eval`` file yet); ``n/a``: the
paper did not run the method in this cell; ``?``: a number the paper's text lost.

Several directories: a protocol may train some methods with other settings (our Table 1
runs TRADES at learning rate 0.01 in a directory of its own); the report reads them all and
names, per directory, its methods and learning rate. A (method, seed) found in two
directories is an error. A run's spec may carry options the paper's column does not
(``gairat:reweight_start_epoch=50``): it stands in the paper's column of its base name when
it is the only spec of that name and no column has its exact name.

Example:

```python
from keras_mwat.experiments import side_by_side

text = side_by_side.report("results/table1-fmnist-tinycnn-linf0.1", "fmnist-tinycnn-linf0.1")
Path("results/table1-fmnist-tinycnn-linf0.1/side_by_side.md").write_text(text)
```
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_mwat.experiments import paper_tables
from keras_mwat.experiments.paper_eval import CHECKPOINTS, output_path

__all__ = [
    "METRICS",
    "RunRecord",
    "load_runs",
    "mean_std",
    "paired_differences",
    "paper_columns",
    "report",
    "seed_values",
]

#: The paper's three numbers, by the key of a ``paper_eval`` file, with their labels.
METRICS = {"clean": "clean", "pgd20": "PGD-20", "aa": "AA"}
_REFERENCES = ("pgd_at", "trades")


@dataclasses.dataclass
class RunRecord:
    """One run folder of a compare directory.

    Attributes:
        method: The method key (``paper_tables.method_key`` of its spec).
        seed: The seed, or None if unknown.
        path: The run folder.
        result: ``result.json`` (None while the run is training).
        evals: The ``paper_eval_<checkpoint>.json`` records by checkpoint.

    Example:

    ```python
    run = load_runs("results/table1-fmnist-tinycnn-linf0.1")[0]
    run.method, run.seed, sorted(run.evals)   # ('pgd_at', 0, ['best', 'last'])
    ```
    """

    method: str
    seed: int | None
    path: Path
    result: dict | None = None
    evals: dict = dataclasses.field(default_factory=dict)


def _directories(directories) -> list[Path]:
    if isinstance(directories, (str, Path)):
        return [Path(directories)]
    found = [Path(directory) for directory in directories]
    if not found:
        raise ValueError("directories is empty: give at least one compare directory")
    return found


def load_runs(directories: str | Path | Sequence[str | Path]) -> list[RunRecord]:
    """Every run folder ``<directory>/<method>/seed<k>/`` of one or more compare
    directories, finished or not, with what it holds.

    Raises:
        ValueError: If two directories hold a run of the same method and seed.

    Example:

    ```python
    [(r.method, r.seed, r.result is not None) for r in load_runs("results/x")]
    load_runs(["results/x", "results/x-lr0.01"])   # TRADES trained at another rate
    ```
    """
    runs = []
    for directory in _directories(directories):
        runs += _load_directory(directory)
    seen = {}
    for run in runs:
        other = seen.setdefault((run.method, run.seed), run.path)
        if other != run.path:
            raise ValueError(f"method {run.method!r}, seed {run.seed} is in two directories: "
                             f"{other} and {run.path}; keep one (move the other out of "
                             "<directory>/<method>/)")
    return runs


def _load_directory(directory: Path) -> list[RunRecord]:
    runs = []
    for path in sorted(directory.glob("*/seed*")):
        if not path.is_dir():
            continue
        result_file = path / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        spec = result.get("method", path.parent.name) if result else path.parent.name
        suffix = path.name[len("seed"):]
        seed = result.get("seed") if result else (int(suffix) if suffix.isdigit() else None)
        evals = {}
        for checkpoint in CHECKPOINTS:
            file = output_path(path, checkpoint)
            if file.exists():
                evals[checkpoint] = json.loads(file.read_text())
        runs.append(RunRecord(paper_tables.method_key(spec), seed, path, result, evals))
    return runs


def paper_columns(methods, paper_methods) -> dict[str, str]:
    """Which paper column each of our method keys stands in: ``{ours: paper's key}``.

    A key the paper has stands in its own column. Otherwise a spec with options
    (``gairat:reweight_start_epoch=50``) stands in the column of its base name (``gairat``)
    when that column exists, no run has the bare base name, and it is the only spec of that
    name: two variants of one method are never silently folded into the paper's number.

    Example:

    ```python
    paper_columns(["pgd_at", "gairat:reweight_start_epoch=50.0"], ["pgd_at", "gairat"])
    # {'pgd_at': 'pgd_at', 'gairat:reweight_start_epoch=50.0': 'gairat'}
    ```
    """
    methods, paper_methods = list(dict.fromkeys(methods)), set(paper_methods)
    columns = {method: method for method in methods if method in paper_methods}
    by_base = {}
    for method in methods:
        if method not in columns:
            by_base.setdefault(method.split(":")[0], []).append(method)
    for base, variants in by_base.items():
        if len(variants) == 1 and base in paper_methods and base not in columns.values():
            columns[variants[0]] = base
    return columns


def _value(record: dict, metric: str) -> float:
    """A ``paper_eval`` number in percent; ``drop`` is AA minus PGD-20 on the AA points."""
    if metric == "drop":
        return 100.0 * (record["aa"] - record["pgd20_on_aa_points"])
    return 100.0 * record[metric]


def seed_values(runs: list[RunRecord], method: str, checkpoint: str,
                metric: str) -> dict[int, float]:
    """``{seed: value}`` in percent of ``method``'s evaluated runs: ``metric`` is a key of
    a ``paper_eval`` file (``clean``, ``pgd20``, ``aa``, ``aa_clean``,
    ``pgd20_on_aa_points``) or ``drop`` (``aa - pgd20_on_aa_points``).

    Example:

    ```python
    seed_values(load_runs("results/x"), "mwat", "last", "aa")   # {0: 68.9, 1: 68.1}
    ```
    """
    key = paper_tables.method_key(method)
    return {run.seed: _value(run.evals[checkpoint], metric) for run in runs
            if run.method == key and checkpoint in run.evals}


def paired_differences(runs: list[RunRecord], method: str, reference: str, checkpoint: str,
                       metric: str) -> dict[int, float]:
    """``{seed: ours(method) − ours(reference)}`` in points, over the seeds both have.

    Example:

    ```python
    paired_differences(load_runs("results/x"), "mwat", "pgd_at", "last", "aa")
    # {0: 0.6, 1: -0.2}: then mean_std(...values())
    ```
    """
    ours = seed_values(runs, method, checkpoint, metric)
    theirs = seed_values(runs, reference, checkpoint, metric)
    return {seed: ours[seed] - theirs[seed] for seed in sorted(ours) if seed in theirs}


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``ddof=1``; None for fewer than two values).

    Example:

    ```python
    mean_std([1.0, 2.0, 3.0])   # (2.0, 1.0)
    ```
    """
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        raise ValueError("mean_std needs at least one value, got none")
    return float(values.mean()), (float(values.std(ddof=1)) if values.size > 1 else None)


def _fmt(values, signed: bool = False) -> str:
    mean, std = mean_std(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if std is None else f"{text} ± {std:.2f}"


def _paper(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "?"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _status(runs: list[RunRecord], method: str, checkpoint: str) -> str:
    """Why a method has no number yet for ``checkpoint``."""
    mine = [run for run in runs if run.method == method]
    if not mine:
        return "not run"
    if not any(run.result is not None for run in mine):
        return "training"
    return "not evaluated"


def _seeds(values: dict) -> str:
    return ",".join(str(seed) for seed in sorted(values)) or "–"


def _paper_difference(paper: dict, method: str, reference: str, metric: str) -> str:
    ours, theirs = paper.get(method), paper.get(reference)
    if ours is None or theirs is None:
        return "n/a"
    a, b = getattr(ours, metric), getattr(theirs, metric)
    return "?" if a is None or b is None else _paper(round(a - b, 10), signed=True)


def _main_table(runs, methods, paper, checkpoint, names) -> list[str]:
    header = ["method", "paper's name", "seeds"]
    for label in METRICS.values():
        header += [f"{label}: ours", f"{label}: paper", f"{label}: Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        theirs = paper.get(method)
        values = {m: seed_values(runs, method, checkpoint, m) for m in METRICS}
        cells = [method, names.get(method, "–"), _seeds(values["clean"])]
        for metric in METRICS:
            printed = None if theirs is None else getattr(theirs, metric)
            ours = values[metric]
            cells.append(_fmt(ours.values()) if ours else _status(runs, method, checkpoint))
            cells.append("n/a" if theirs is None else _paper(printed))
            cells.append(_fmt([v - printed for v in ours.values()], signed=True)
                         if ours and printed is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired_table(runs, methods, paper, checkpoint, reference) -> list[str]:
    header = ["method", "paired seeds"]
    for label in METRICS.values():
        header += [f"{label}: ours", f"{label}: paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        if method == reference:
            continue
        differences = {m: paired_differences(runs, method, reference, checkpoint, m)
                       for m in METRICS}
        cells = [method, _seeds(differences["clean"])]
        for metric in METRICS:
            found = differences[metric]
            cells.append(_fmt(found.values(), signed=True) if found else "–")
            cells.append(_paper_difference(paper, method, reference, metric))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _drop_table(runs, methods, paper) -> list[str]:
    header = ["method", "seeds", "ours, last", "ours, best", "paper",
              "ours − pgd_at's (paired, last)", "ours − pgd_at's (paired, best)",
              "paper − AT's"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    at = paper.get("pgd_at")
    for method in methods:
        theirs = paper.get(method)
        drops = {c: seed_values(runs, method, c, "drop") for c in CHECKPOINTS}
        cells = [method, _seeds(drops["last"] or drops["best"])]
        for checkpoint in CHECKPOINTS:
            found = drops[checkpoint]
            cells.append(_fmt(found.values(), signed=True) if found
                         else _status(runs, method, checkpoint))
        cells.append("n/a" if theirs is None else _paper(theirs.drop, signed=True))
        for checkpoint in CHECKPOINTS:
            paired = paired_differences(runs, method, "pgd_at", checkpoint, "drop")
            cells.append("–" if method == "pgd_at" or not paired
                         else _fmt(paired.values(), signed=True))
        paper_gap = (None if theirs is None or at is None or theirs.drop is None
                     or at.drop is None else round(theirs.drop - at.drop, 10))
        cells.append("–" if method == "pgd_at" else
                     ("n/a" if paper_gap is None else _paper(paper_gap, signed=True)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _best_epochs(runs, method) -> str:
    epochs = [run.evals["best"].get("best_epoch") for run in runs
              if run.method == method and "best" in run.evals]
    return ",".join("?" if e is None else str(e + 1) for e in epochs) or "–"


def _best_last_table(runs, methods) -> list[str]:
    header = ["method", "paired seeds", "best epoch (1-based)"]
    for label in METRICS.values():
        header += [f"{label}: best", f"{label}: last", f"{label}: best − last"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method, "", _best_epochs(runs, method)]
        seeds = set()
        for metric in METRICS:
            best = seed_values(runs, method, "best", metric)
            last = seed_values(runs, method, "last", metric)
            paired = [best[s] - last[s] for s in sorted(best) if s in last]
            seeds |= {s for s in best if s in last}
            cells.append(_fmt(best.values()) if best else _status(runs, method, "best"))
            cells.append(_fmt(last.values()) if last else _status(runs, method, "last"))
            cells.append(_fmt(paired, signed=True) if paired else "–")
        cells[1] = _seeds(seeds)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _directory_settings(directory: Path) -> str:
    """The data and training settings of a compare directory, from its ``compare.json``."""
    settings = directory / "compare.json"
    if not settings.exists():
        return "settings: no compare.json yet"
    record = json.loads(settings.read_text())
    optimizer = record.get("optimizer") or {}
    return (f"data {record.get('dataset', '?')}, {record.get('train_samples', '?')} training "
            f"and {record.get('test_samples', '?')} test images, {record.get('epochs', '?')} "
            f"epochs, {optimizer.get('name', '?')} learning rate "
            f"{optimizer.get('learning_rate', '?')}")


def _sources(runs, directories: list[Path]) -> list[str]:
    """One line per directory: its settings and its methods."""
    lines = ["Runs read from:", ""]
    for directory in directories:
        methods = sorted({run.method for run in runs if run.path.parent.parent == directory})
        lines.append(f"- `{directory}` ({_directory_settings(directory)}): "
                     f"{', '.join(methods) or 'no runs'}")
    return [*lines, ""]


def _provenance(runs) -> list[str]:
    def commits(records):
        found = set()
        for record in records:
            code = (record or {}).get("code") or {}
            found.add((code.get("commit") or "unknown")[:12] + (" (dirty)" if code.get("dirty")
                                                                 else ""))
        return ", ".join(sorted(found)) or "–"

    evaluations = [record for run in runs for record in run.evals.values()]
    training = commits(run.result for run in runs if run.result is not None)
    note = " (unknown: trained before the commit was recorded)" if "unknown" in training else ""
    n_pgd = sorted({record["n_pgd20"] for record in evaluations})
    n_aa = sorted({record["n_aa"] for record in evaluations})
    return [f"Evaluated on {', '.join(map(str, n_pgd)) or '–'} test points (clean, PGD-20) "
            f"and the first {', '.join(map(str, n_aa)) or '–'} (AutoAttack). "
            f"Code of the evaluations: {commits(evaluations)}; of the training runs: "
            f"{training}{note}."]


def report(directory: str | Path | Sequence[str | Path], cell: str,
           command: str | None = None) -> str:
    """The Markdown side-by-side report of ``directory`` against the paper's ``cell``.

    Args:
        directory: A ``keras-mwat compare`` directory, evaluated by ``keras-mwat
            paper-eval``, or several (``load_runs``); the first names the report.
        cell: A cell id of ``paper_tables`` (e.g. ``"fmnist-tinycnn-linf0.1"``).
        command: The command that produced the report, quoted at its end.

    Returns:
        The Markdown text.

    Raises:
        ValueError: If ``cell`` is not a cell of the paper's tables, or a (method, seed)
            is in two directories.

    Example:

    ```python
    print(report("results/table1-fmnist-tinycnn-linf0.1", "fmnist-tinycnn-linf0.1"))
    ```
    """
    paper_cell = paper_tables.get_cell(cell)
    directories = _directories(directory)
    runs = load_runs(directories)
    columns = paper_columns([run.method for run in runs], paper_cell.results)
    row_of = {column: method for method, column in columns.items()}
    methods = [row_of.get(column, column) for column in paper_cell.results]
    methods = list(dict.fromkeys(methods + [run.method for run in runs]))
    paper = {row_of.get(column, column): result
             for column, result in paper_cell.results.items()}
    names = {method: paper_tables.PAPER_NAMES.get(columns.get(method, method), "–")
             for method in methods}
    extra = "".join(f" --with-runs {other}" for other in directories[1:])
    evaluated = " and ".join(f"`keras-mwat paper-eval {path}`" for path in directories)
    regenerate = command or (
        f"the training command (`keras-mwat compare ... --resume {directories[0]}`) with "
        f"`--report-only --paper-cell {paper_cell.cell}{extra}` added")
    lines = [
        f"# Ours next to the paper: {paper_cell.label} (Table {paper_cell.table})",
        "",
        f"Ours: {evaluated}: clean and PGD-20 (20 steps of ε/4, one "
        "random start) on the test set, AutoAttack (APGD-CE, APGD-T, FAB-T, Square, in "
        "cascade) on its first points, the same points for every run. Percent; mean ± "
        "standard deviation over the seeds listed (no ± with one seed). Paper: its "
        f"Table {paper_cell.table}, single runs. Δ = ours − paper. Marks: *not run* (no run "
        "folder), *training* (no result.json yet), *not evaluated* (no paper_eval file "
        "yet), *n/a* (not in the paper's table), *?* (lost in the paper's text).",
        "",
        *_sources(runs, directories),
        *_provenance(runs),
    ]
    titles = {"last": "Last checkpoint (model.keras, the last epoch)",
              "best": "Best checkpoint (best.keras: highest PGD-10 validation accuracy)"}
    for checkpoint in CHECKPOINTS:
        lines += ["", f"## {titles[checkpoint]}", "",
                  *_main_table(runs, methods, paper, checkpoint, names)]
        for reference in _REFERENCES:
            if reference not in paper and not any(run.method == reference for run in runs):
                lines += ["", f"No {reference} run in this directory and no "
                              f"{paper_tables.PAPER_NAMES[reference]} column in the paper's "
                              "table: no paired difference against it."]
                continue
            lines += ["", f"Paired difference against {reference} ({checkpoint}; per seed, "
                          f"then mean ± std; paper: its {paper_tables.PAPER_NAMES[reference]}"
                          " column):", "",
                      *_paired_table(runs, methods, paper, checkpoint, reference)]
    lines += ["", "## PGD-20 → AutoAttack drop", "",
              "AA minus PGD-20 on the same first points, in points (more negative: PGD-20 "
              "overstated the robustness more). The paper's BiLAW drops more than its AT "
              "(−7.2 against −4.0 on CIFAR-10 WRN 8/255): the columns against pgd_at show "
              "whether ours does.", "", *_drop_table(runs, methods, paper),
              "", "## Best checkpoint against last", "",
              "Best − last is paired by seed.", "", *_best_last_table(runs, methods),
              "", f"Regenerate: {regenerate}.", ""]
    return "\n".join(lines)
