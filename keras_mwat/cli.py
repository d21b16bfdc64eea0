"""Command line: ``keras-mwat train | compare | export | tune`` (also ``python -m keras_mwat``).

``keras-mwat train`` with no argument trains MWAT on the embedded MNIST subset with a small
CNN (L-inf, eps 0.3), shows Keras progress bars, prints clean accuracy and robust accuracy
under PGD-20 with restarts on the test split, and writes a run directory
``runs/<timestamp>/`` with the ``.keras`` model and ``metrics.json``.

``keras-mwat compare --methods mwat,pgd_at,trades`` trains each method on the same data,
from the same initial weights, with the same attack, budget and seed, evaluates each with
the same attacks, prints one table and writes it as JSON and Markdown to the run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_COMPARE = "mwat,pgd_at,trades,mart,mail,gairat"


def _bounded(kind, minimum, strict: bool):
    """An argparse type: ``kind(text)`` that must be > minimum (strict) or >= minimum."""

    def parse(text: str):
        value = kind(text)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


_positive_float = _bounded(float, 0, strict=True)
_nonnegative_float = _bounded(float, 0, strict=False)
_positive_int = _bounded(int, 1, strict=False)
_nonnegative_int = _bounded(int, 0, strict=False)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=_positive_int, default=10)
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--eps", type=_nonnegative_float, default=0.3,
                        help="L-inf radius of the training and evaluation attacks")
    parser.add_argument("--train-steps", type=_positive_int, default=10,
                        help="PGD steps of the training attack")
    parser.add_argument("--eval-steps", type=_positive_int, default=20,
                        help="PGD steps of the final evaluation attack")
    parser.add_argument("--eval-restarts", type=_positive_int, default=2,
                        help="random restarts of the final evaluation attack")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="classifier optimizer (sgd: momentum 0.9)")
    parser.add_argument("--lr", type=_positive_float, default=1e-3,
                        help="classifier learning rate (also MWAT's virtual-step size)")
    parser.add_argument("--eps-warmup-epochs", type=_nonnegative_int, default=3,
                        help="epochs over which the training radius ramps up from 0 "
                             "(0: no warm-up)")
    parser.add_argument("--dataset", default="embedded",
                        help="'embedded' (MNIST subset shipped offline) or 'tfds:NAME' "
                             "(already prepared in --data-dir; never downloads)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir")
    parser.add_argument("--subset", type=_positive_int, default=None,
                        help="use at most this many training samples (tiny runs; "
                             "embedded data only)")
    parser.add_argument("--test-subset", type=_positive_int, default=None,
                        help="evaluate on at most this many test samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs"),
                        help="parent folder of the run directory")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras progress output (0 silent, 1 bar, 2 one line per epoch)")


def _method_list(text: str) -> list[str]:
    from keras_mwat.methods import METHODS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or text!r}; choose from {sorted(METHODS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    from keras_mwat.methods import METHODS

    parser = argparse.ArgumentParser(
        prog="keras-mwat",
        description="Learned margin-based sample reweighting for adversarial training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train a method on the embedded dataset and report robustness"
    )
    train.add_argument("--method", choices=sorted(METHODS), default="mwat")
    _add_common_arguments(train)
    compare = commands.add_parser(
        "compare", help="train several methods on equal footing and tabulate their robustness"
    )
    compare.add_argument("--methods", type=_method_list, default=_method_list(DEFAULT_COMPARE),
                         help=f"comma-separated methods (default {DEFAULT_COMPARE}; "
                              f"all: {','.join(sorted(METHODS))})")
    _add_common_arguments(compare)
    export = commands.add_parser(
        "export", help="export a trained model's classifier as a SavedModel for TF Serving")
    export.add_argument("--model", type=Path, required=True, help="a .keras file")
    export.add_argument("--out", type=Path, required=True, help="SavedModel directory")
    export.add_argument("--input-name", default="image")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--seed", type=int, default=0, help="unused; accepted for symmetry")
    tune = commands.add_parser(
        "tune", help="Keras Tuner random search over MWAT's hyperparameters (embedded data)")
    tune.add_argument("--max-trials", type=_positive_int, default=3)
    tune.add_argument("--epochs", type=_positive_int, default=2)
    tune.add_argument("--eps", type=_positive_float, default=0.3)
    tune.add_argument("--train-steps", type=_positive_int, default=10)
    tune.add_argument("--batch-size", type=_positive_int, default=128)
    tune.add_argument("--subset", type=_positive_int, default=None)
    tune.add_argument("--eps-warmup-epochs", type=_nonnegative_int, default=1,
                      help="epochs over which each trial's training radius ramps up")
    tune.add_argument("--directory", type=Path, default=Path("runs/tuning"))
    tune.add_argument("--seed", type=int, default=0)
    return parser


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def attack_accuracies(classifier, x, y, attacks: dict, batch_size: int = 256) -> dict:
    """Clean accuracy, accuracy under each attack, and the per-sample worst case over them.

    Args:
        classifier: A logits model.
        x, y: Test inputs and integer labels.
        attacks: ``{name: attack}``.

    Returns:
        ``{"clean": ..., name: ..., "worst_case": ...}``, fractions in [0, 1].
    """
    import numpy as np

    def correct(inputs):
        return classifier.predict(inputs, batch_size=batch_size, verbose=0).argmax(1) == y

    results = {"clean": float(correct(x).mean())}
    worst = correct(x)
    for name, attack in attacks.items():
        robust = correct(np.asarray(attack(classifier, x, y, batch_size=batch_size)))
        results[name] = float(robust.mean())
        worst &= robust
    results["worst_case"] = float(worst.mean())
    return results


class TFDSSplits:
    """A prepared tensorflow-datasets dataset with the interface of ``EmbeddedData``.

    Training uses the first 90% of the "train" split, validation the last 10%, and the
    final evaluation the "test" split (at most ``test_limit`` samples, as arrays).
    """

    def __init__(self, name: str, data_dir=None, test_limit=None, value_range=(0.0, 1.0)):
        import numpy as np

        from keras_mwat.data.tfds import dataset_info, load_tfds

        self.name, self.data_dir, self.value_range = name, data_dir, tuple(value_range)
        self._load = load_tfds
        info = dataset_info(name, data_dir=data_dir)
        self.input_shape = tuple(info["input_shape"])
        self.num_classes = int(info["num_classes"])
        train_size = int(info["num_examples"].get("train", 0))
        self.y_train = np.zeros(train_size - train_size // 10)  # only its length is used
        xs, ys = [], []
        for x, y in self._split("test", 512, shuffle=False):
            xs.append(x.numpy())
            ys.append(y.numpy())
            if test_limit and sum(len(b) for b in ys) >= test_limit:
                break
        self.x_test = np.concatenate(xs)[:test_limit]
        self.y_test = np.concatenate(ys)[:test_limit]

    def _split(self, split, batch_size, shuffle, seed=0):
        return self._load(self.name, split=split, data_dir=self.data_dir,
                          batch_size=batch_size, shuffle=shuffle, seed=seed,
                          value_range=self.value_range)

    def train_dataset(self, batch_size=128, seed=0):
        return self._split("train[:90%]", batch_size, shuffle=True, seed=seed)

    def validation_dataset(self, batch_size=128):
        return self._split("train[90%:]", batch_size, shuffle=False)


def _load_data(args):
    import keras_mwat as km

    if args.dataset.startswith("tfds:"):
        return TFDSSplits(args.dataset[len("tfds:"):], data_dir=args.data_dir,
                          test_limit=args.test_subset)
    if args.dataset != "embedded":
        raise SystemExit(f"keras-mwat: --dataset must be 'embedded' or 'tfds:NAME', got "
                         f"{args.dataset!r}")
    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset, validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)
    return data


def _prepare(args):
    """(data, training attack, evaluation attacks) for a command's arguments."""
    import keras_mwat as km

    data = _load_data(args)
    eps = args.eps
    train_attack = km.attacks.PGD(eps=eps, step_size=max(2.5 * eps / args.train_steps, 1e-6),
                                  num_steps=args.train_steps, value_range=data.value_range)
    eval_attacks = {
        f"pgd{args.eval_steps}x{args.eval_restarts}": km.attacks.PGD(
            eps=eps, step_size=max(2.5 * eps / args.eval_steps, 1e-6),
            num_steps=args.eval_steps, num_restarts=args.eval_restarts,
            value_range=data.value_range, seed=args.seed),
    }
    return data, train_attack, eval_attacks


def _new_run_dir(parent: Path) -> Path:
    run_dir = parent / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    run_dir.mkdir(parents=True)
    return run_dir


def _fit(method: str, args, data, train_attack, directory: Path):
    """Trains ``method`` from the seed's initial weights; returns (model, seconds, history)."""
    import keras

    import keras_mwat as km

    keras.utils.set_random_seed(args.seed)  # the same initial weights for every method
    classifier = km.zoo.small_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    model = km.METHODS[method](classifier, attack=train_attack, seed=args.seed)
    if args.optimizer == "adam":
        optimizer = keras.optimizers.Adam(args.lr)
    else:
        optimizer = keras.optimizers.SGD(args.lr, momentum=0.9)
    model.compile(optimizer=optimizer)
    callbacks = [keras.callbacks.CSVLogger(str(directory / "history.csv"))]
    if args.eps_warmup_epochs > 0:
        callbacks.append(km.callbacks.EpsilonWarmup(epochs=args.eps_warmup_epochs))
    started = time.time()
    history = model.fit(
        data.train_dataset(batch_size=args.batch_size, seed=args.seed),
        validation_data=data.validation_dataset(batch_size=args.batch_size),
        epochs=args.epochs, verbose=args.verbose, callbacks=callbacks,
    )
    seconds = time.time() - started
    model.save(directory / "model.keras")
    return model, seconds, history.history


def _settings(args, train_attack, eval_attacks) -> dict:
    import keras

    return {
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": {"name": args.optimizer, "learning_rate": args.lr},
        "eps_warmup_epochs": args.eps_warmup_epochs,
        "train_attack": keras.saving.serialize_keras_object(train_attack)["config"],
        "eval_attacks": {name: keras.saving.serialize_keras_object(attack)["config"]
                         for name, attack in eval_attacks.items()},
    }


def train(args: argparse.Namespace) -> dict:
    """Runs ``keras-mwat train``; returns the metrics written to ``metrics.json``."""
    data, train_attack, eval_attacks = _prepare(args)
    run_dir = _new_run_dir(args.out)
    print(f"Training {args.method} on {args.dataset} ({len(data.y_train)} train, "
          f"{len(data.y_test)} test), eps={args.eps:g} L-inf, seed={args.seed}; "
          f"run dir {run_dir}")
    model, seconds, history = _fit(args.method, args, data, train_attack, run_dir)
    results = attack_accuracies(model.classifier, data.x_test, data.y_test, eval_attacks)
    (attack_name,) = eval_attacks
    metrics = {
        "method": args.method,
        "train_samples": int(len(data.y_train)),
        "test_samples": int(len(data.y_test)),
        "train_seconds": round(seconds, 1),
        "clean_accuracy": results["clean"],
        "robust_accuracy": results["worst_case"],
        **_settings(args, train_attack, eval_attacks),
        "history": {key: [float(v) for v in values] for key, values in history.items()},
    }
    metrics["eval_attack"] = metrics["eval_attacks"][attack_name]
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nclean accuracy:  {results['clean']:.4f}  ({len(data.y_test)} test samples)")
    print(f"robust accuracy: {results['worst_case']:.4f}  (PGD-{args.eval_steps} x "
          f"{args.eval_restarts} restarts, L-inf eps={args.eps:g})")
    print(f"wrote {run_dir / 'model.keras'} and {run_dir / 'metrics.json'}")
    return metrics


def _markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) and c != "train_seconds"
                 else f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c])
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(args: argparse.Namespace) -> dict:
    """Runs ``keras-mwat compare``; returns what it writes to ``compare.json``."""
    data, train_attack, eval_attacks = _prepare(args)
    run_dir = _new_run_dir(args.out)
    print(f"Comparing {', '.join(args.methods)} on {args.dataset} "
          f"({len(data.y_train)} train, {len(data.y_test)} test), eps={args.eps:g} L-inf, "
          f"{args.epochs} epochs, seed={args.seed}; run dir {run_dir}")
    rows = []
    for method in args.methods:
        directory = run_dir / method
        directory.mkdir()
        print(f"\n== {method}")
        model, seconds, _ = _fit(method, args, data, train_attack, directory)
        results = attack_accuracies(model.classifier, data.x_test, data.y_test, eval_attacks)
        rows.append({"method": method, **results, "train_seconds": round(seconds, 1)})
    columns = ["method", "clean", *eval_attacks, "worst_case", "train_seconds"]
    table = _markdown_table(rows, columns)
    report = {"rows": rows, "test_samples": int(len(data.y_test)),
              "train_samples": int(len(data.y_train)),
              **_settings(args, train_attack, eval_attacks)}
    (run_dir / "compare.json").write_text(json.dumps(report, indent=2))
    (run_dir / "compare.md").write_text(
        f"# keras-mwat compare\n\n{table}\n\nAccuracies on {len(data.y_test)} test points; "
        f"L-inf eps={args.eps:g}; evaluation attacks: "
        + ", ".join(f"{name} {json.dumps(config)}" for name, config in
                    report["eval_attacks"].items()) + "\n")
    print("\n" + table)
    print(f"\nwrote {run_dir / 'compare.json'} and {run_dir / 'compare.md'}")
    return report


def export(args: argparse.Namespace) -> str:
    """Runs ``keras-mwat export``: the classifier of a ``.keras`` model as a SavedModel."""
    import keras

    import keras_mwat as km

    model = keras.models.load_model(args.model)
    path = km.export_classifier(model, args.out, input_name=args.input_name,
                                overwrite=args.overwrite)
    print(f"wrote SavedModel {path} (signature serving_default: {args.input_name} -> "
          "logits, probabilities)")
    return path


def tune(args: argparse.Namespace):
    """Runs ``keras-mwat tune`` on the embedded data; prints the best trial."""
    import keras_mwat as km
    from keras_mwat import tuning

    data = km.data.load_embedded(seed=args.seed)
    if args.subset:
        data = data.subset(train=args.subset, validation=max(args.subset // 4, 32),
                           seed=args.seed)
    callbacks = ([km.callbacks.EpsilonWarmup(epochs=args.eps_warmup_epochs)]
                 if args.eps_warmup_epochs else [])
    tuner = tuning.tune(data, max_trials=args.max_trials, epochs=args.epochs,
                        directory=str(args.directory), seed=args.seed,
                        batch_size=args.batch_size, eps=args.eps,
                        attack_steps=args.train_steps, callbacks=callbacks)
    best = tuner.oracle.get_best_trials(1)[0]
    print(f"best val_robust_accuracy {best.score:.4f} with {best.hyperparameters.values}")
    print(f"trials in {tuner.project_dir}")
    return tuner


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keras-mwat`` command."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    {"train": train, "compare": compare, "export": export, "tune": tune}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
