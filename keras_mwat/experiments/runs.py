"""Experiment orchestration of ``keras-mwat train`` and ``keras-mwat compare``: data,
recipe, classifier and method from the parsed arguments, resumable training, evaluation,
results written to a run directory; and ``paper-eval``.

The command line (``keras_mwat.cli``) parses the arguments and calls ``train``,
``compare`` and ``paper_eval`` here; none of this is imported by ``import keras_mwat``.

Example:
```python
from keras_mwat.cli import build_parser
from keras_mwat.experiments import runs
args = build_parser().parse_args(["train", "--epochs", "1", "--subset", "256"])
runs.train(args)  # what `keras-mwat train --epochs 1 --subset 256` runs
```
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from keras_mwat.experiments.data_sources import TFDSSplits, _load_data
from keras_mwat.experiments.specs import (
    EMBEDDED_META_SIZE,
    META_SIZE,
    _run_name,
    parse_method_spec,
    parse_model_spec,
)
from keras_mwat.experiments.summary import _read_history, best_versus_last, summarize


def _build_method(spec: str, classifier, attack, data, seed=None, meta_size=META_SIZE,
                  meta_held_out_for_all: bool = False):
    """The method of ``spec`` around ``classifier`` and the data it trains on.

    A method that needs a held-out meta set (MWAT's family and MWN with their default
    ``meta_source="dataset"``) gets ``meta_size`` samples split off the training split (the
    same ones for every seed); its training split is that much smaller, as in the paper.
    With ``meta_held_out_for_all`` every other method loses the same samples too (and does
    not use them): a control that trains every method on the same images.
    Returns ``(model, data)``.
    """
    import keras_mwat as km

    name, overrides = parse_method_spec(spec)
    model = km.METHODS[name](classifier, attack=attack, seed=seed, **overrides)
    if getattr(model, "has_meta_set", True):
        return model, (_with_meta_set(data, meta_size) if meta_held_out_for_all else data)
    data = _with_meta_set(data, meta_size)
    model.set_meta_data(data.meta)
    return model, data


def _evaluation_attacks(args, eps: float, value_range):
    """The ``attacks`` argument of ``evaluate_robustness`` for ``--eval-attacks``."""
    import keras_mwat as km

    if args.eval_attacks != "pgd":
        return args.eval_attacks
    return [km.attacks.PGD(eps=eps, step_size=max(2.5 * eps / args.eval_steps, 1e-6),
                           num_steps=args.eval_steps, num_restarts=args.eval_restarts,
                           value_range=value_range, seed=args.seed)]


def _robustness(classifier, data, args, eps: float, norm: str = "linf", attacks=None,
                n=None, checks: bool = True, verbose: int = 0):
    """``km.evaluate_robustness`` of ``classifier`` on the test split of ``data``."""
    import keras_mwat as km

    return km.evaluate_robustness(
        classifier, (data.x_test, data.y_test), eps=eps, norm=norm,
        attacks=_evaluation_attacks(args, eps, data.value_range) if attacks is None else attacks,
        n=n, batch_size=getattr(args, "eval_batch_size", 256), seed=args.seed,
        value_range=data.value_range, checks=checks, verbose=verbose)


def _resolve_defaults(args) -> None:
    """Fills the options left at None from ``--recipe`` (or this library's quick settings)."""
    paper = args.recipe != "none"
    quick = {"epochs": 10, "optimizer": "adam", "lr": 1e-3, "eps_warmup_epochs": 3}
    if paper:
        from keras_mwat import recipes

        recipe = recipes.get(args.recipe)
        quick = {"epochs": recipe.epochs, "optimizer": "sgd", "lr": recipe.learning_rate,
                 "eps_warmup_epochs": 0}
    for key, value in quick.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if getattr(args, "init", None) is None:
        args.init = "torch" if paper else "keras"
    if getattr(args, "model", None) is None:
        args.model = "tiny_cnn" if args.recipe == "paper" else (
            "cifar_small_cnn" if args.recipe == "paper-cifar" else "small_cnn")


def _recipe(args):
    """The ``km.recipes.Recipe`` of ``--recipe`` scaled to ``--epochs`` and ``--lr``, or None."""
    if args.recipe == "none":
        return None
    from keras_mwat import recipes

    recipe = recipes.get(args.recipe)
    if args.epochs != recipe.epochs:
        recipe = recipe.scaled(args.epochs)
    return recipe.replace(learning_rate=args.lr, batch_size=args.batch_size)


def _prepare(args):
    """(data, training attack) for a command's arguments."""
    import keras_mwat as km

    _resolve_defaults(args)
    data = _load_data(args)
    eps, recipe = args.eps, _recipe(args)
    if recipe is not None:
        return data, recipe.replace(attack_steps=args.train_steps).attack(
            eps, norm=args.norm, value_range=data.value_range)
    train_attack = km.attacks.PGD(eps=eps, step_size=max(2.5 * eps / args.train_steps, 1e-6),
                                  num_steps=args.train_steps, norm=args.norm,
                                  value_range=data.value_range)
    return data, train_attack


def _classifier(args, data):
    """The ``--model`` classifier for the data's input shape and classes."""
    import keras_mwat as km

    name, overrides = parse_model_spec(args.model)
    try:
        classifier = getattr(km.zoo, name)(input_shape=data.input_shape,
                                           num_classes=data.num_classes, **overrides)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"keras-mwat: --model {args.model}: {error}") from None
    if args.init == "torch":
        km.zoo.torch_init(classifier, seed=args.seed)
    return classifier


def _meta_size(args, train_size: int | None = None) -> int:
    """``--meta-size``, or the default: the paper's 1,000 (500 on the embedded data), at
    most a fifth of the training split (tiny ``--subset`` runs)."""
    if args.meta_size is not None:
        return args.meta_size
    size = EMBEDDED_META_SIZE if args.dataset == "embedded" else META_SIZE
    if train_size is not None:
        size = min(size, max(train_size // 5, 1))
    return size


def _with_meta_set(data, size: int):
    """The data with a held-out meta set (``.meta``) split off its training split."""
    if isinstance(data, TFDSSplits):
        return data.with_meta(size)
    if size >= len(data.y_train):
        raise SystemExit(f"keras-mwat: --meta-size {size} must be smaller than the "
                         f"{len(data.y_train)} training samples")
    return data.with_holdout(meta=size, early_stopping=0, seed=0)


def _new_run_dir(parent: Path) -> Path:
    run_dir = parent / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    run_dir.mkdir(parents=True)
    return run_dir


_STRATEGIES: dict = {}
"""One ``tf.distribute`` strategy per ``--strategy`` name and process."""


@contextlib.contextmanager
def _build_scope(args):
    """The context in which ``_fit`` builds and compiles a model.

    ``--mixed-precision``: Keras's global ``mixed_float16`` policy, restored when the block
    ends (layers and the training model keep the policy they were built with; ``compile``
    then wraps the optimizer in a ``LossScaleOptimizer``). ``--strategy mirrored``: the scope
    of a ``tf.distribute.MirroredStrategy`` over the visible GPUs (the CPU without any),
    so the variables are mirrored and ``fit`` distributes each (global) batch.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    if getattr(args, "mixed_precision", False):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        if getattr(args, "strategy", "none") == "mirrored":
            import tensorflow as tf

            if "mirrored" not in _STRATEGIES:
                _STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy()
            with _STRATEGIES["mirrored"].scope():
                yield
        else:
            yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _fit(method: str, args, data, train_attack, directory: Path, extra_callbacks=()):
    """Trains ``method`` from the seed's initial weights; returns (model, seconds, history,
    the data it trained on)."""
    import math

    import keras

    import keras_mwat as km

    keras.utils.set_random_seed(args.seed)  # the same initial weights for every method
    with _build_scope(args):  # --mixed-precision and --strategy: build and compile here
        classifier = _classifier(args, data)
        model, data = _build_method(
            method, classifier, train_attack, data, seed=args.seed,
            meta_size=_meta_size(args, len(data.y_train)),
            meta_held_out_for_all=getattr(args, "meta_held_out_for_all", False))
        recipe = _recipe(args)
        if recipe is not None:
            optimizer = recipe.optimizer(math.ceil(len(data.y_train) / args.batch_size))
        elif args.optimizer == "adam":
            optimizer = keras.optimizers.Adam(args.lr)
        else:
            optimizer = keras.optimizers.SGD(args.lr, momentum=0.9)
        model.compile(optimizer=optimizer)
    # A run cut off (machine stopped, job killed) continues from its last finished epoch
    # when the same command is run again (compare --resume): weights, optimizer state, the
    # in-graph seed state and the epoch come back; the backup is deleted when fit ends.
    # The extra callbacks (e.g. RobustValidation) come first: their logs reach the CSV file.
    callbacks = [*extra_callbacks,
                 keras.callbacks.BackupAndRestore(str(directory / "backup"), save_freq="epoch"),
                 keras.callbacks.CSVLogger(str(directory / "history.csv"), append=True)]
    if args.eps_warmup_epochs > 0:
        callbacks.append(km.callbacks.EpsilonWarmup(epochs=args.eps_warmup_epochs))
    # A run stuck at chance is said so, with the likely cause and the fix.
    callbacks.append(km.callbacks.CollapseMonitor())
    if isinstance(model, km.MWATModel) and getattr(data, "x_train", None) is not None:
        # Learned weights: those of a fixed probe of 500 training points (the same for every
        # seed and method) after every epoch, for `keras-mwat figures` (weights_over_epochs).
        # Its own attack seed: training draws the same numbers with or without it.
        import numpy as np

        probe = np.sort(np.random.default_rng(0).choice(
            len(data.y_train), min(500, len(data.y_train)), replace=False))
        callbacks.insert(len(extra_callbacks), km.callbacks.WeightHistory(
            data.x_train[probe], data.y_train[probe], directory / "weight_history.npz",
            index=probe))
    train_data = data.train_dataset(batch_size=args.batch_size, seed=args.seed)
    if recipe is not None:
        train_data = recipe.prepare(train_data, seed=args.seed)
    started = time.time()
    history = model.fit(
        train_data, validation_data=data.validation_dataset(batch_size=args.batch_size),
        epochs=args.epochs, verbose=args.verbose, callbacks=callbacks,
    )
    seconds = time.time() - started
    model.save(directory / "model.keras")
    return model, seconds, history.history, data


def _code_version() -> dict:
    """The code's commit (``git rev-parse HEAD``) and version, recorded in every result."""
    from keras_mwat.experiments.provenance import code_version

    return code_version()


def _settings(args, train_attack) -> dict:
    import keras

    return {
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "recipe": args.recipe,
        "model": args.model,
        "init": args.init,
        "dataset": args.dataset,
        "optimizer": {"name": args.optimizer, "learning_rate": args.lr},
        "eps_warmup_epochs": args.eps_warmup_epochs,
        "meta_held_out_for_all": bool(getattr(args, "meta_held_out_for_all", False)),
        "mixed_precision": bool(getattr(args, "mixed_precision", False)),
        "strategy": getattr(args, "strategy", "none"),
        "train_attack": keras.saving.serialize_keras_object(train_attack)["config"],
        "eval_attacks": args.eval_attacks,
        "code": _code_version(),
    }


def _attack_summary(report) -> str:
    return ", ".join(entry["name"] for entry in report.attacks) + " in cascade"


def train(args: argparse.Namespace) -> dict:
    """Runs ``keras-mwat train``; returns the metrics written to ``metrics.json``."""
    data, train_attack = _prepare(args)
    run_dir = _new_run_dir(args.out)
    print(f"Training {args.method} on {args.dataset} ({len(data.y_train)} train, "
          f"{len(data.y_test)} test), eps={args.eps:g} L-inf, seed={args.seed}; "
          f"run dir {run_dir}")
    callbacks = []
    if args.select == "best":
        import keras_mwat as km

        callbacks.append(km.callbacks.RobustValidation(
            data.x_val, data.y_val, attack=_selection_attack(args, data),
            restore_best_weights=True))
    model, seconds, history, trained_on = _fit(args.method, args, data, train_attack, run_dir,
                                               extra_callbacks=callbacks)
    print("\nEvaluating on the test split ...")
    report = _robustness(model.classifier, data, args, eps=args.eps)
    report.save(run_dir / "robustness.json")
    metrics = {
        "method": args.method,
        "train_samples": int(len(trained_on.y_train)),
        "meta_samples": int(len(getattr(trained_on, "y_meta", ()))),
        "select": args.select,
        "test_samples": int(len(data.y_test)),
        "train_seconds": round(seconds, 1),
        "clean_accuracy": report.clean_accuracy,
        "robust_accuracy": report.robust_accuracy,
        "per_attack": report.per_attack,
        **_settings(args, train_attack),
        "robustness": report.to_dict(),
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\n{report}")
    print(f"\nclean accuracy:  {report.clean_accuracy:.4f}  ({report.n} test samples)")
    print(f"robust accuracy: {report.robust_accuracy:.4f}  ({_attack_summary(report)}, "
          f"L-inf eps={args.eps:g})")
    print(f"wrote {run_dir / 'model.keras'}, {run_dir / 'metrics.json'} and "
          f"{run_dir / 'robustness.json'}")
    return metrics


def _selection_attack(args, data):
    """PGD-10 on the validation split: the checkpoint selection (early stopping) attack."""
    import keras_mwat as km

    return km.attacks.PGD(eps=args.eps, step_size=max(2.5 * args.eps / 10, 1e-6),
                          num_steps=10, norm=args.norm, value_range=data.value_range,
                          seed=args.seed)


def _compare_one(method: str, seed: int, args, data, train_attack, directory: Path) -> dict:
    """Trains and evaluates one method with one seed; returns its result row."""
    import copy

    import keras_mwat as km

    run_args = copy.copy(args)
    run_args.seed = seed
    # Best checkpoint: robust accuracy on the validation split after every epoch, under
    # PGD-10 (the selection a user would make; the test split is never looked at).
    best = km.callbacks.RobustValidation(data.x_val, data.y_val,
                                         attack=_selection_attack(run_args, data),
                                         filepath=directory / "best.keras",
                                         restore_best_weights=False)
    model, seconds, _, trained_on = _fit(
        method, run_args, data, train_attack, directory,
        extra_callbacks=[best] if args.best_eval != "none" else [])
    history = _read_history(directory / "history.csv")  # every epoch, also across resumes
    last = _robustness(model.classifier, data, run_args, eps=args.eps,
                       verbose=min(args.verbose, 1))
    last.save(directory / "robustness.json")
    row = {"method": method, "seed": seed, "config": _method_config(model),
           "train_samples": int(len(trained_on.y_train)),
           "meta_samples": int(len(getattr(trained_on, "y_meta", ()))),
           "clean": last.clean_accuracy,
           **last.per_attack, "worst_case": last.robust_accuracy,
           "train_seconds": round(seconds, 1), "eval_seconds": round(last.duration_seconds, 1),
           "masking_warnings": len(last.warnings), "robustness": last.to_dict(),
           "code": _code_version(),
           "history": {k: [float(v) for v in vs] for k, vs in history.items()}}
    if args.best_eval != "none" and best.best_weights is not None:
        model.set_weights(best.best_weights)
        chosen = _robustness(model.classifier, data, run_args, eps=args.eps,
                             attacks=args.best_eval, verbose=0)
        chosen.save(directory / "robustness_best.json")
        row["best"] = {"epoch": best.best_epoch, "val_robust": best.best_robust_accuracy,
                       "clean": chosen.clean_accuracy, "worst_case": chosen.robust_accuracy,
                       "attacks": args.best_eval, "robustness": chosen.to_dict()}
    (directory / "result.json").write_text(json.dumps(row, indent=2))
    return row


def _method_config(model) -> dict:
    """The method's own options (the scalar entries of its Keras config), for the record:
    which defaults a run had, whatever the defaults are later. MWAT's grouped options
    (``meta_set``, ``look_ahead``) are recorded by their flat names (``meta_objective``, ...),
    as runs of earlier releases recorded them."""
    config = model.get_config()
    record = {key: value for key, value in config.items()
              if value is None or isinstance(value, (str, int, float, bool))}
    if any(isinstance(config.get(group), dict) for group in ("meta_set", "look_ahead")):
        from keras_mwat.methods.mwat_options import FLAT_OPTIONS

        for flat, (group, field) in FLAT_OPTIONS.items():
            record[flat] = config[group]["config"][field]
    return record


def _check_method_specs(specs: list[str], data, train_attack, args) -> None:
    """Builds every method once before any training, so that a bad argument value of an
    ablation variant fails at once (naming it) rather than hours into a comparison."""

    for spec in specs:
        classifier = _classifier(args, data)
        try:
            _build_method(spec, classifier, train_attack, data,
                          meta_size=_meta_size(args, len(data.y_train)))
        except (ValueError, TypeError) as error:
            raise SystemExit(f"keras-mwat: method {spec!r}: {error}") from None


class _NewModelTraceFilter:
    """Drops TensorFlow's "frequent retracing" warning about Keras's own training function.

    Every method of ``compare`` is a new Keras model with its own ``train_function``; each
    is traced once. TensorFlow's heuristic counts traces by the code location of the traced
    Python function, so from the fifth model on, in a run with few steps per model, it
    reports them as retracing of one function. Nothing is traced twice; any other retracing
    warning still shows.
    """

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "TensorFlowTrainer._make_function" in message)


def compare(args: argparse.Namespace) -> dict:
    """Runs ``keras-mwat compare``; returns what it writes to ``compare.json``.

    With ``--resume DIR`` the (method, seed) runs already finished in ``DIR`` are read back
    instead of being trained again, so a long comparison can be continued.
    """
    if args.report_only and args.resume is None:
        raise SystemExit("keras-mwat: --report-only needs --resume DIR")
    with_runs = getattr(args, "with_runs", [])
    if with_runs and args.paper_cell is None:
        raise SystemExit("keras-mwat: --with-runs needs --paper-cell CELL")
    for other in with_runs:
        if not other.is_dir():
            raise SystemExit(f"keras-mwat: --with-runs {other}: no such directory")
    import logging

    logging.getLogger("tensorflow").addFilter(_NewModelTraceFilter())
    data, train_attack = _prepare(args)
    seeds = args.seeds or [args.seed]
    if not args.report_only:  # a report trains nothing: no model to check
        _check_method_specs(args.methods, data, train_attack, args)
    if args.resume is not None:
        run_dir = args.resume
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = _new_run_dir(args.out)
    print(f"Comparing {', '.join(args.methods)} on {args.dataset} "
          f"({len(data.y_train)} train, {len(data.y_test)} test), eps={args.eps:g} L-inf, "
          f"{args.epochs} epochs, seeds {seeds}, evaluation {args.eval_attacks}; "
          f"run dir {run_dir}")
    rows = []
    for seed in seeds:
        for method in args.methods:
            directory = run_dir / _run_name(method) / f"seed{seed}"
            if (directory / "result.json").exists():
                rows.append(json.loads((directory / "result.json").read_text()))
                print(f"== {method}, seed {seed}: done before, read back")
                continue
            if args.report_only:
                print(f"== {method}, seed {seed}: not finished, left out")
                continue
            directory.mkdir(parents=True, exist_ok=True)
            print(f"\n== {method}, seed {seed}")
            rows.append(_compare_one(method, seed, args, data, train_attack, directory))
    if not rows:
        raise SystemExit(f"keras-mwat: no finished runs in {run_dir}")
    table = summarize(rows, reference=args.reference)
    report = {"rows": rows, "test_samples": int(len(data.y_test)),
              "train_samples": int(len(data.y_train)), "seeds": seeds,
              **_settings(args, train_attack)}
    (run_dir / "compare.json").write_text(json.dumps(report, indent=2))
    settings = "; ".join(f"{entry['name']} {json.dumps(entry['config'])}"
                         for entry in rows[0]["robustness"]["attacks"])
    command = "keras-mwat " + " ".join(sys.argv[1:]) if sys.argv[1:] else "keras-mwat compare"
    (run_dir / "compare.md").write_text(
        f"# keras-mwat compare\n\n{table}\n\nMean ± standard deviation over seeds "
        f"{seeds}; accuracies on {len(data.y_test)} test points; L-inf eps={args.eps:g}; "
        f"{args.epochs} epochs. Attack columns give the worst-case robust accuracy after each "
        f"attack of the cascade. Best checkpoint: highest PGD-10 robust accuracy on the "
        f"validation split, evaluated with the '{args.best_eval}' suite. Attacks: {settings}\n"
        f"\nCommand: `{command}`\n"
        + (f"\n## Best checkpoint against last epoch\n\n{best_versus_last(rows)}\n"
           if any("best" in row for row in rows) else ""))
    print("\n" + table)
    print(f"\nwrote {run_dir / 'compare.json'} and {run_dir / 'compare.md'}")
    if args.paper_cell is not None:  # after compare.json: it reads the learning rate there
        _write_side_by_side([run_dir, *with_runs], args.paper_cell)
    return report


def _write_side_by_side(directories: list[Path], cell: str) -> str:
    """Writes and prints ``side_by_side.md`` in the first of ``directories``: the runs of all
    of them next to the paper's ``cell``."""
    from keras_mwat.experiments import side_by_side

    run_dir = directories[0]
    try:
        text = side_by_side.report(directories, cell)
    except ValueError as error:
        raise SystemExit(f"keras-mwat: {error}") from None
    (run_dir / "side_by_side.md").write_text(text)
    print("\n" + text)
    print(f"wrote {run_dir / 'side_by_side.md'}")
    return text


def paper_eval(args: argparse.Namespace) -> list[Path]:
    """Runs ``keras-mwat paper-eval DIR``; returns the ``paper_eval_*.json`` files written."""
    from keras_mwat.experiments import paper_eval as protocol

    if not args.directory.is_dir():
        raise SystemExit(f"keras-mwat paper-eval: DIR {args.directory} is not a directory")
    if args.dataset is None:
        settings = args.directory / "compare.json"
        if not settings.exists():
            raise SystemExit(f"keras-mwat paper-eval: --dataset is required: no "
                             f"{settings} to take it from")
        args.dataset = json.loads(settings.read_text()).get("dataset", "embedded")
    test_subset, args.subset, args.test_subset = args.test_subset, None, None
    data = _load_data(args)
    x_test, y_test = data.x_test[:test_subset], data.y_test[:test_subset]
    print(f"Paper evaluation of the finished runs in {args.directory}: {args.dataset} test "
          f"({len(y_test)} points; AutoAttack on the first {min(args.n_aa, len(y_test))}), "
          f"checkpoints {','.join(args.which)}, seed {args.seed}")
    try:
        return protocol.evaluate_runs(
            args.directory, x_test, y_test, eps=args.eps, norm=args.norm, n_aa=args.n_aa,
            which=args.which, value_range=data.value_range, seed=args.seed,
            batch_size=args.batch_size, verbose=args.verbose,
            data_info={"dataset": args.dataset, "data_dir": args.data_dir,
                       "test_subset": test_subset})
    except ValueError as error:
        raise SystemExit(f"keras-mwat paper-eval: {error}") from None
