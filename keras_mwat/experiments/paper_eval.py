"""The paper's evaluation protocol, run on the saved checkpoints of finished runs.

For each finished run of a ``keras-mwat compare`` directory (``DIR/<method>/seed<k>/`` with
a ``result.json``) and each of its checkpoints, ``model.keras`` (the last epoch) and
``best.keras`` (the epoch of highest PGD-10 validation accuracy), this writes
``paper_eval_last.json`` / ``paper_eval_best.json`` with:

- clean accuracy and **PGD-20 as the paper runs it** on the whole test set: 20 steps of
  ε/4, one random start (uniform in the ball; the paper does not say which start
  [GAP]), ``km.recipes.get("paper").eval_attack``;
- **AutoAttack's standard suite** (the ``"autoattack"`` preset: APGD-CE, APGD-T, FAB-T,
  Square, in cascade) on the **first** ``n_aa`` test points (1,000 by default; the same
  points for every method and seed), with the clean accuracy and the PGD-20 accuracy on
  those same points, so that the PGD-20 → AA drop is measured on one set of points;
- both ``RobustnessReport``\\ s in full (every attack's configuration and seed, n,
  masking checks, library versions), the code's commit, the data, the checkpoint file
  (its SHA-256 and, for ``best``, its epoch) and the duration.

Accuracies are fractions in [0, 1]. Files already present are left alone (the evaluation
is resumable); each file is written atomically.

Example:

```python
from keras_mwat.experiments import paper_eval

data = km.data.load_fashion_mnist()
paper_eval.evaluate_runs("results/table1-fmnist-tinycnn-linf0.1", data.x_test,
                         data.y_test, data_info={"dataset": "fashion_mnist"})
```
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from keras_mwat import validation
from keras_mwat.experiments.provenance import code_version, write_atomically

__all__ = [
    "CHECKPOINTS",
    "evaluate_checkpoint",
    "evaluate_runs",
    "finished_runs",
    "output_path",
    "paper_pgd20",
]

#: Checkpoint name -> file of a run directory.
CHECKPOINTS = {"last": "model.keras", "best": "best.keras"}
#: AutoAttack runs on this many test points, the first ones (the paper's CIFAR number).
DEFAULT_N_AA = 1000


def paper_pgd20(eps: float, norm: str = "linf", value_range=(0.0, 1.0), seed: int | None = 0):
    """The paper's evaluation PGD-20: 20 steps of ``eps / 4``, one uniform random start.

    Example:

    ```python
    attack = paper_pgd20(0.1)
    attack.step_size, attack.num_steps, attack.num_restarts   # (0.025, 20, 1)
    ```
    """
    from keras_mwat import recipes

    return recipes.get("paper").eval_attack(eps, norm=norm, value_range=value_range, seed=seed)


def finished_runs(directory: str | Path) -> list[Path]:
    """The run folders ``directory/<method>/seed<k>/`` that hold a ``result.json``.

    Example:

    ```python
    [run.parent.name for run in finished_runs("results/table1-fmnist-tinycnn-linf0.1")]
    ```
    """
    return sorted(path.parent for path in Path(directory).glob("*/seed*/result.json"))


def output_path(run: str | Path, checkpoint: str) -> Path:
    """``run/paper_eval_<checkpoint>.json``.

    Example:

    ```python
    output_path("results/x/mwat/seed0", "best")   # .../mwat/seed0/paper_eval_best.json
    ```
    """
    checkpoint = validation.check_choice(checkpoint, "checkpoint", tuple(CHECKPOINTS))
    return Path(run) / f"paper_eval_{checkpoint}.json"


def _correct(classifier, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    logits = classifier.predict(x, batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=1) == y


def evaluate_checkpoint(
    model,
    x_test: np.ndarray,
    y_test: np.ndarray,
    eps: float,
    norm: str = "linf",
    n_aa: int = DEFAULT_N_AA,
    value_range=(0.0, 1.0),
    seed: int = 0,
    batch_size: int = 256,
    aa_attacks="autoattack",
    verbose: int = 0,
) -> dict:
    """The paper's protocol on one model: clean and PGD-20 on all of ``x_test``, AutoAttack
    on its first ``n_aa`` points.

    Args:
        model: A keras-mwat training model or a classifier returning logits.
        x_test: Test inputs.
        y_test: Integer test labels.
        eps: Radius of the threat model.
        norm: ``"linf"`` or ``"l2"``.
        n_aa: AutoAttack on the first ``n_aa`` points (at most all of them).
        value_range: ``(low, high)`` box of valid inputs.
        seed: Seed of PGD-20's random start and of the AutoAttack suite.
        batch_size: Points per attack batch.
        aa_attacks: The AutoAttack suite (``"autoattack"``; a list of attacks only for
            tests).
        verbose: Progress bars of ``evaluate_robustness`` (0 silent).

    Returns:
        A dict with ``clean``, ``pgd20``, ``n_pgd20`` (the whole set), ``aa``,
        ``aa_clean``, ``pgd20_on_aa_points``, ``n_aa``, ``aa_per_attack``, and the two
        reports in full (``pgd20_report``, ``aa_report``), accuracies in [0, 1].

    Example:

    ```python
    record = evaluate_checkpoint(keras.models.load_model("model.keras"),
                                 data.x_test, data.y_test, eps=0.1)
    record["pgd20"], record["aa"]
    ```
    """
    from keras_mwat.evaluation import evaluate_robustness

    n_aa = min(validation.check_int(n_aa, "n_aa"), len(y_test))
    y_test = np.asarray(y_test)
    pgd = paper_pgd20(eps, norm=norm, value_range=value_range, seed=seed)
    pgd_report, x_worst = evaluate_robustness(
        model, (x_test, y_test), eps=eps, norm=norm, attacks=[pgd], batch_size=batch_size,
        seed=seed, value_range=value_range, verbose=verbose, return_adversarial=True)
    classifier = getattr(model, "classifier", model)
    # x_worst holds the fooling input where PGD-20 fooled the model, else the clean input:
    # a point is PGD-20-robust exactly when x_worst is classified correctly.
    robust_first = _correct(classifier, x_worst[:n_aa], y_test[:n_aa], batch_size)
    aa_report = evaluate_robustness(
        model, (x_test, y_test), eps=eps, norm=norm, attacks=aa_attacks, n=n_aa,
        batch_size=batch_size, seed=seed, value_range=value_range, verbose=verbose)
    return {
        "clean": pgd_report.clean_accuracy,
        "pgd20": pgd_report.robust_accuracy,
        "n_pgd20": pgd_report.n,
        "aa": aa_report.robust_accuracy,
        "aa_clean": aa_report.clean_accuracy,
        "pgd20_on_aa_points": float(robust_first.mean()),
        "n_aa": aa_report.n,
        "aa_per_attack": aa_report.per_attack,
        "masking_warnings": pgd_report.warnings + aa_report.warnings,
        "pgd20_report": pgd_report.to_dict(),
        "aa_report": aa_report.to_dict(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _best_epoch(run: Path) -> int | None:
    state = run / "best.keras.best.json"
    if state.exists():
        return json.loads(state.read_text()).get("epoch")
    return None


def evaluate_runs(
    directory: str | Path,
    x_test: np.ndarray,
    y_test: np.ndarray,
    eps: float | None = None,
    norm: str | None = None,
    n_aa: int = DEFAULT_N_AA,
    which: Sequence[str] = ("last", "best"),
    value_range=(0.0, 1.0),
    seed: int = 0,
    batch_size: int = 256,
    data_info: dict | None = None,
    aa_attacks="autoattack",
    verbose: int = 0,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Runs ``evaluate_checkpoint`` on every finished run of ``directory`` and each
    checkpoint of ``which``, writing ``paper_eval_<checkpoint>.json`` beside it.

    A file already present is skipped (so an interrupted evaluation continues where it
    stopped); a missing checkpoint file is reported and skipped.

    Args:
        directory: A ``keras-mwat compare`` run directory.
        x_test: Test inputs (the whole test set: PGD-20 runs on all of them).
        y_test: Integer test labels.
        eps: Radius; None takes that of each model's training attack.
        norm: Norm; None takes that of each model's training attack (else ``"linf"``).
        n_aa: AutoAttack on the first ``n_aa`` test points.
        which: Checkpoints, ``"last"`` and/or ``"best"``.
        value_range: ``(low, high)`` box of valid inputs.
        seed: Seed of the attacks (the same for every run).
        batch_size: Points per attack batch.
        data_info: What ``x_test`` is (data set, folder), stored in each file.
        aa_attacks: The AutoAttack suite (a list of attacks only for tests).
        verbose: Progress bars (0 silent).
        log: Where progress lines go.

    Returns:
        The files written (not those skipped).

    Raises:
        ValueError: If ``which`` names an unknown checkpoint, or no ``eps`` is given and a
            model has no training attack.

    Example:

    ```python
    evaluate_runs("results/table1-fmnist-tinycnn-linf0.1", data.x_test, data.y_test,
                  n_aa=1000, data_info={"dataset": "fashion_mnist"})
    ```
    """
    import keras

    which = [validation.check_choice(name, "which", tuple(CHECKPOINTS)) for name in which]
    runs = finished_runs(directory)
    if not runs:
        log(f"no finished run (*/seed*/result.json) in {directory}")
    written = []
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        name = f"{run.parent.name}/{run.name}"
        for checkpoint in which:
            target, source = output_path(run, checkpoint), run / CHECKPOINTS[checkpoint]
            if target.exists():
                log(f"{name} {checkpoint}: {target.name} exists, skipped")
                continue
            if not source.exists():
                log(f"{name} {checkpoint}: no {source.name}, skipped")
                continue
            started = time.time()
            model = keras.models.load_model(source)
            attack = getattr(model, "attack", None)
            run_eps = eps if eps is not None else getattr(attack, "eps", None)
            if run_eps is None:
                raise ValueError(f"eps=None and {source} has no training attack to take the "
                                 "radius from: pass eps")
            run_norm = norm or getattr(attack, "norm", "linf")
            record = {
                "protocol": "paper: clean and PGD-20 (step eps/4, 1 random start) on all "
                            "test points; AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on the "
                            "first n_aa",
                "method": result.get("method", run.parent.name),
                "seed": result.get("seed"),
                "checkpoint": checkpoint,
                "model_file": source.name,
                "model_sha256": _sha256(source),
                "best_epoch": _best_epoch(run) if checkpoint == "best" else None,
                "eps": float(run_eps),
                "norm": run_norm,
                "train_attack": (keras.saving.serialize_keras_object(attack)["config"]
                                 if attack is not None else None),
                "data": {**(data_info or {}), "split": "test", "test_points": int(len(y_test)),
                         "aa_points": f"first {min(n_aa, len(y_test))}"},
                **evaluate_checkpoint(model, x_test, y_test, eps=run_eps, norm=run_norm,
                                      n_aa=n_aa, value_range=value_range, seed=seed,
                                      batch_size=batch_size, aa_attacks=aa_attacks,
                                      verbose=verbose),
                "code": code_version(),
                "duration_seconds": round(time.time() - started, 1),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
            }
            write_atomically(target, json.dumps(record, indent=2) + "\n")
            written.append(target)
            log(f"{name} {checkpoint}: clean {record['clean']:.4f}, PGD-20 "
                f"{record['pgd20']:.4f} ({record['n_pgd20']} points); on the first "
                f"{record['n_aa']}: clean {record['aa_clean']:.4f}, PGD-20 "
                f"{record['pgd20_on_aa_points']:.4f}, AA {record['aa']:.4f}; "
                f"{record['duration_seconds']:.0f} s -> {target}")
    return written
