"""Command line: ``keras-mwat train`` (also ``python -m keras_mwat train``).

``keras-mwat train`` with no argument trains MWAT on the embedded MNIST subset with a small
CNN (L-inf, eps 0.3), shows Keras progress bars, prints clean accuracy and robust accuracy
under PGD-20 with restarts on the test split, and writes a run directory
``runs/<timestamp>/`` with the ``.keras`` model and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

METHODS = ("mwat", "pgd_at")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-mwat",
        description="Learned margin-based sample reweighting for adversarial training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train a method on the embedded dataset and report robustness"
    )
    train.add_argument("--method", choices=METHODS, default="mwat")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--eps", type=_nonnegative_float, default=0.3,
                       help="L-inf radius of the training and evaluation attacks")
    train.add_argument("--train-steps", type=_positive_int, default=10,
                       help="PGD steps of the training attack")
    train.add_argument("--eval-steps", type=_positive_int, default=20,
                       help="PGD steps of the final evaluation attack")
    train.add_argument("--eval-restarts", type=_positive_int, default=2,
                       help="random restarts of the final evaluation attack")
    train.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="classifier optimizer (sgd: momentum 0.9)")
    train.add_argument("--lr", type=_positive_float, default=1e-3,
                       help="classifier learning rate (also MWAT's virtual-step size)")
    train.add_argument("--eps-warmup-epochs", type=_nonnegative_int, default=3,
                       help="epochs over which the training radius ramps up from 0 "
                            "(0: no warm-up)")
    train.add_argument("--subset", type=_positive_int, default=None,
                       help="use at most this many training samples (tiny runs)")
    train.add_argument("--test-subset", type=_positive_int, default=None,
                       help="evaluate on at most this many test samples")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("runs"),
                       help="parent folder of the run directory")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="Keras progress output (0 silent, 1 bar, 2 one line per epoch)")
    return parser


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def robust_accuracy(classifier, x, y, attack, batch_size: int = 256) -> float:
    """Fraction of samples classified correctly on the attack's adversarial inputs."""
    import numpy as np

    x_adv = np.asarray(attack(classifier, x, y, batch_size=batch_size))
    predictions = classifier.predict(x_adv, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float((predictions == y).mean())


def clean_accuracy(classifier, x, y, batch_size: int = 256) -> float:
    predictions = classifier.predict(x, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float((predictions == y).mean())


def train(args: argparse.Namespace) -> dict:
    """Runs ``keras-mwat train``; returns the metrics written to ``metrics.json``."""
    _quiet_tensorflow()
    import keras

    import keras_mwat as km

    keras.utils.set_random_seed(args.seed)
    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset, validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)
    eps = args.eps
    train_attack = km.attacks.PGD(eps=eps, step_size=max(2.5 * eps / args.train_steps, 1e-6),
                                  num_steps=args.train_steps, value_range=data.value_range)
    eval_attack = km.attacks.PGD(eps=eps, step_size=max(2.5 * eps / args.eval_steps, 1e-6),
                                 num_steps=args.eval_steps, num_restarts=args.eval_restarts,
                                 value_range=data.value_range, seed=args.seed)
    classifier = km.zoo.small_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    model_class = {"mwat": km.MWATModel, "pgd_at": km.PGDATModel}[args.method]
    model = model_class(classifier, attack=train_attack, seed=args.seed)
    if args.optimizer == "adam":
        optimizer = keras.optimizers.Adam(args.lr)
    else:
        optimizer = keras.optimizers.SGD(args.lr, momentum=0.9)
    model.compile(optimizer=optimizer)

    run_dir = args.out / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = args.out / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    run_dir.mkdir(parents=True)
    callbacks = [keras.callbacks.CSVLogger(str(run_dir / "history.csv"))]
    if args.eps_warmup_epochs > 0:
        callbacks.append(km.callbacks.EpsilonWarmup(epochs=args.eps_warmup_epochs))
    print(f"Training {args.method} on the embedded MNIST data ({len(data.y_train)} train, "
          f"{len(data.y_test)} test), eps={eps:g} L-inf, seed={args.seed}; run dir {run_dir}")
    started = time.time()
    history = model.fit(
        data.train_dataset(batch_size=args.batch_size, seed=args.seed),
        validation_data=data.validation_dataset(batch_size=args.batch_size),
        epochs=args.epochs,
        verbose=args.verbose,
        callbacks=callbacks,
    )
    train_seconds = time.time() - started
    model.save(run_dir / "model.keras")

    clean = clean_accuracy(classifier, data.x_test, data.y_test)
    robust = robust_accuracy(classifier, data.x_test, data.y_test, eval_attack)
    metrics = {
        "method": args.method,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_samples": int(len(data.y_train)),
        "test_samples": int(len(data.y_test)),
        "train_seconds": round(train_seconds, 1),
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "optimizer": {"name": args.optimizer, "learning_rate": args.lr},
        "eps_warmup_epochs": args.eps_warmup_epochs,
        "train_attack": keras.saving.serialize_keras_object(train_attack)["config"],
        "eval_attack": {"name": "PGD", **keras.saving.serialize_keras_object(eval_attack)["config"]},
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nclean accuracy:  {clean:.4f}  ({len(data.y_test)} test samples)")
    print(f"robust accuracy: {robust:.4f}  (PGD-{args.eval_steps} x {args.eval_restarts} "
          f"restarts, L-inf eps={eps:g})")
    print(f"wrote {run_dir / 'model.keras'} and {run_dir / 'metrics.json'}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keras-mwat`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
