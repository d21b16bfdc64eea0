"""Command line: ``keras-mwat train | evaluate | compare | paper-eval | export | tune | figures``.

Also ``python -m keras_mwat``.

``keras-mwat train`` with no argument trains MWAT on the embedded MNIST subset with a small
CNN (L-inf, eps 0.3), shows Keras progress bars, evaluates clean and robust accuracy on the
test split with the ``"quick"`` attack suite (PGD-20 x 2 restarts, then APGD-CE, in
cascade, with masking checks), and writes a run directory ``runs/<timestamp>/`` with the
``.keras`` model, ``metrics.json`` and ``robustness.json``.

``keras-mwat evaluate --model runs/.../model.keras --attacks standard`` evaluates a saved
model (a training model or a bare classifier) with ``km.evaluate_robustness``, prints the
report and writes its JSON.

``keras-mwat compare --methods mwat,pgd_at,trades`` trains each method on the same data,
from the same initial weights, with the same attack, budget and seed, evaluates each with
the same attacks (``"standard"`` by default), prints one table and writes it as JSON and
Markdown to the run directory.

``keras-mwat paper-eval DIR`` evaluates the last and best checkpoints of every finished run
of a compare directory with the paper's protocol (``keras_mwat.experiments.paper_eval``);
``keras-mwat compare --resume DIR --report-only --paper-cell CELL`` then writes
``DIR/side_by_side.md``, ours next to the paper's numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_mwat.experiments.data_sources import _load_data
from keras_mwat.experiments.runs import compare, paper_eval, train
from keras_mwat.experiments.specs import MODELS, parse_method_spec, parse_model_spec

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


def _eps_value(text: str) -> float:
    """An argparse type: a radius >= 0, as a number (``0.031``) or a fraction (``8/255``)."""
    numerator, slash, denominator = str(text).partition("/")
    try:
        value = float(numerator) / float(denominator) if slash else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"must be a number or a fraction such as 8/255, got {text}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 and finite, got {text}")
    return value


def _model_spec(text: str) -> str:
    """An argparse type: a valid ``--model`` spec, returned as given."""
    try:
        parse_model_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _add_common_arguments(parser: argparse.ArgumentParser, default_eval: str = "quick") -> None:
    parser.add_argument("--recipe", choices=("none", "paper", "paper-cifar"), default="none",
                        help="'paper': the paper's protocol (km.recipes: SGD momentum 0.9, "
                             "lr 0.1 /10 at epochs 30 and 60 of 100, batch 128, PGD-10 step "
                             "eps/4; 'paper-cifar' adds random crop and flip); it sets the "
                             "defaults of --epochs, --optimizer, --lr, --train-steps and "
                             "--eps-warmup-epochs (0), which still override it; drops scale "
                             "with --epochs. 'none': this library's quick settings")
    parser.add_argument("--model", type=_model_spec, default=None,
                        help=f"classifier from km.zoo, one of {', '.join(MODELS)} (default "
                             "small_cnn; tiny_cnn with --recipe paper; cifar_small_cnn with "
                             "--recipe paper-cifar), optionally with builder arguments as "
                             "NAME:key=value[:key=value], e.g. wide_resnet:depth=10:"
                             "widen_factor=1 (wide_resnet alone is WRN-34-10)")
    parser.add_argument("--init", choices=("keras", "torch"), default=None,
                        help="initialisation of the classifier: Keras's defaults, or "
                             "PyTorch's (km.zoo.torch_init; default with --recipe paper*: "
                             "with Keras's, PGD-AT with the paper's SGD stays at chance)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="default 10 (100 with --recipe paper)")
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--eps", type=_eps_value, default=0.3,
                        help="radius of the training and evaluation attacks: a number or a "
                             "fraction such as 8/255")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf",
                        help="norm of the training and evaluation attacks")
    parser.add_argument("--train-steps", type=_positive_int, default=10,
                        help="PGD steps of the training attack")
    parser.add_argument("--eval-attacks", choices=("quick", "standard", "autoattack", "pgd"),
                        default=default_eval,
                        help="final evaluation: 'quick' (PGD-20x2 + APGD-CE), 'autoattack' "
                             "(AutoAttack's standard suite: APGD-CE, APGD-T, FAB-T, Square), "
                             "'standard' (APGD-CE, APGD-T, CW-PGD, Square) or 'pgd' (PGD only, "
                             "with --eval-steps and --eval-restarts; for tiny runs)")
    parser.add_argument("--eval-steps", type=_positive_int, default=20,
                        help="PGD steps of the 'pgd' evaluation")
    parser.add_argument("--eval-restarts", type=_positive_int, default=2,
                        help="random restarts of the 'pgd' evaluation")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default=None,
                        help="classifier optimizer (default adam; sgd: momentum 0.9; with "
                             "--recipe the recipe's SGD and schedule)")
    parser.add_argument("--lr", type=_positive_float, default=None,
                        help="classifier learning rate, also MWAT's pseudo-step size "
                             "(default 1e-3; 0.1 with --recipe paper)")
    parser.add_argument("--eps-warmup-epochs", type=_nonnegative_int, default=None,
                        help="epochs over which the training radius ramps up from 0 "
                             "(0: no warm-up; default 3, 0 with --recipe paper)")
    parser.add_argument("--meta-size", type=_positive_int, default=None,
                        help="held-out meta set of the bilevel methods (MWAT, MWN), split "
                             "off the training split (default 1000 as in the paper; 500 on "
                             "the embedded data; at most a fifth of the training split)")
    parser.add_argument("--meta-held-out-for-all", action="store_true",
                        help="split the meta set off the training split for every method, "
                             "not only the bilevel ones (which alone use it): a control in "
                             "which every method trains on the same images")
    parser.add_argument("--dataset", default="embedded",
                        help="'embedded' (MNIST subset shipped offline), 'fashion_mnist' "
                             "(the full data set from --data-dir, default Debian's "
                             "/usr/share/datasets/fashion-mnist: `make fashion-mnist`) or "
                             "'tfds:NAME' (already prepared in --data-dir; never downloads)")
    parser.add_argument("--data-dir", default=None,
                        help="tensorflow-datasets data_dir, or Fashion-MNIST's folder")
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
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                        default=False,
                        help="train under Keras's mixed_float16 policy (float16 compute, "
                             "float32 weights, loss scaling; logits, losses, margins and "
                             "sample weights stay float32); for GPUs with tensor cores, slower "
                             "on CPU")
    parser.add_argument("--strategy", choices=("none", "mirrored"), default="none",
                        help="'mirrored': tf.distribute.MirroredStrategy over the visible "
                             "GPUs (the CPU if there is none); --batch-size is then the "
                             "global batch, split across the replicas")


def _method_list(text: str) -> list[str]:
    specs = [spec.strip() for spec in text.split(",") if spec.strip()]
    if not specs:
        raise argparse.ArgumentTypeError(f"no method in {text!r}")
    for spec in specs:
        try:
            parse_method_spec(spec)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return specs


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {text!r}")
    return seeds


def _paper_cell(text: str) -> str:
    from keras_mwat.experiments import paper_tables

    try:
        return paper_tables.get_cell(text).cell
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _checkpoint_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in ("last", "best") for name in names):
        raise argparse.ArgumentTypeError(f"expected last, best or last,best, got {text!r}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    from keras_mwat.registry import method_names

    parser = argparse.ArgumentParser(
        prog="keras-mwat",
        description="Learned margin-based sample reweighting for adversarial training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train a method on the embedded dataset and report robustness"
    )
    train.add_argument("--method", choices=method_names(), default="mwat")
    train.add_argument("--select", choices=("last", "best"), default="last",
                       help="'best': keep the weights of the epoch with the highest PGD-10 "
                            "robust accuracy on the validation (early-stopping) split, as "
                            "the paper early-stopped BiLAW; 'last': the last epoch's")
    _add_common_arguments(train)
    compare = commands.add_parser(
        "compare", help="train several methods on equal footing and tabulate their robustness"
    )
    compare.add_argument("--methods", type=_method_list, default=_method_list(DEFAULT_COMPARE),
                         help=f"comma-separated methods (default {DEFAULT_COMPARE}; "
                              f"all: {','.join(method_names())}); an ablation variant "
                              f"passes constructor arguments as NAME:key=value[:key=value], "
                              f"e.g. mwat:meta_objective=adversarial")
    _add_common_arguments(compare, default_eval="standard")
    compare.add_argument("--seeds", type=_seed_list, default=None,
                         help="comma-separated seeds (overrides --seed), e.g. 0,1,2")
    compare.add_argument("--best-eval", choices=("none", "quick", "standard", "autoattack"),
                         default="quick",
                         help="also evaluate the best-validation checkpoint with this suite")
    compare.add_argument("--resume", type=Path, default=None,
                         help="run directory of an unfinished comparison to continue")
    compare.add_argument("--reference", default=None,
                         help="method (spec) the paired worst-case difference is taken "
                              "against (default pgd_at when compared)")
    compare.add_argument("--report-only", action="store_true",
                         help="with --resume: tabulate the finished runs, train nothing")
    compare.add_argument("--paper-cell", type=_paper_cell, default=None,
                         help="also write DIR/side_by_side.md: ours (paper-eval files) next "
                              "to this cell of the paper's tables, e.g. "
                              "fmnist-tinycnn-linf0.1 (keras_mwat.experiments.paper_tables)")
    compare.add_argument("--with-runs", type=Path, action="append", default=[],
                         metavar="DIR",
                         help="with --paper-cell: also put the runs of this other compare "
                              "directory in side_by_side.md (e.g. methods trained at another "
                              "learning rate); repeatable")
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model's robustness (attacks in cascade, report)")
    evaluate.add_argument("--model", type=Path, required=True,
                          help="a .keras file (a keras-mwat training model or a classifier)")
    evaluate.add_argument("--attacks", choices=("quick", "standard", "autoattack"),
                          default="standard",
                          help="'autoattack': AutoAttack's standard suite (APGD-CE, APGD-T, "
                               "FAB-T, Square); 'standard': CW-PGD in place of FAB-T; "
                               "'quick': PGD-20x2 and APGD-CE")
    evaluate.add_argument("--eps", type=_nonnegative_float, default=None,
                          help="radius (default: that of the model's training attack)")
    evaluate.add_argument("--norm", choices=("linf", "l2"), default=None,
                          help="norm (default: that of the model's training attack, or linf)")
    evaluate.add_argument("--n", type=_positive_int, default=None,
                          help="evaluate the first N test points (default: all)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--dataset", default="embedded",
                          help="'embedded' or 'tfds:NAME' (prepared in --data-dir)")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--no-checks", action="store_true",
                          help="skip the gradient-masking checks")
    evaluate.add_argument("--output", type=Path, default=None,
                          help="report JSON (default: <model>.robustness.json beside it)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--verbose", type=int, choices=(0, 1), default=1)
    paper_eval = commands.add_parser(
        "paper-eval", help="the paper's evaluation of every finished run of a compare "
                           "directory: clean and PGD-20 (step eps/4) on the whole test set, "
                           "AutoAttack on its first --n-aa points; last and best checkpoint")
    paper_eval.add_argument("directory", type=Path,
                            help="a `keras-mwat compare` run directory (DIR/METHOD/seedK/)")
    paper_eval.add_argument("--which", type=_checkpoint_list, default=["last", "best"],
                            help="checkpoints: last (model.keras), best (best.keras) or "
                                 "last,best (default)")
    paper_eval.add_argument("--n-aa", type=_positive_int, default=1000,
                            help="AutoAttack on the first N test points (default 1000)")
    paper_eval.add_argument("--eps", type=_nonnegative_float, default=None,
                            help="radius (default: that of each model's training attack)")
    paper_eval.add_argument("--norm", choices=("linf", "l2"), default=None,
                            help="norm (default: that of each model's training attack)")
    paper_eval.add_argument("--dataset", default=None,
                            help="'fashion_mnist', 'embedded' or 'tfds:NAME' (default: the "
                                 "dataset in DIR/compare.json)")
    paper_eval.add_argument("--data-dir", default=None,
                            help="tensorflow-datasets data_dir, or Fashion-MNIST's folder")
    paper_eval.add_argument("--test-subset", type=_positive_int, default=None,
                            help="evaluate on the first N test points only (for tests)")
    paper_eval.add_argument("--batch-size", type=_positive_int, default=256)
    paper_eval.add_argument("--seed", type=int, default=0,
                            help="seed of the attacks (the same for every run)")
    paper_eval.add_argument("--verbose", type=int, choices=(0, 1), default=0)
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
    figures = commands.add_parser(
        "figures", help="draw the figures of a compare run (weights vs margin, per-class "
                        "weights and adversarial confusion, lowest/highest-weighted images, "
                        "weights over the epochs, accuracy scatter, training curves)")
    figures.add_argument("--results", type=Path, required=True,
                         help="a `keras-mwat compare` run directory")
    figures.add_argument("--out", type=Path, default=Path("docs/img"),
                         help="where to write the PNGs")
    figures.add_argument("--model", type=Path, default=None,
                         help="model to inspect (default <results>/mwat/seed0/model.keras)")
    figures.add_argument("--n", type=_positive_int, default=500,
                         help="test points to inspect the weights on")
    figures.add_argument("--seed", type=int, default=0)
    figures.add_argument("--dataset", choices=("embedded", "fashion_mnist"), default="embedded",
                         help="the run's data, whose test and training images the weights "
                              "are inspected on: 'embedded' or 'fashion_mnist' (read from "
                              "--data-dir, default Debian's /usr/share/datasets/fashion-mnist)")
    figures.add_argument("--data-dir", default=None, help="Fashion-MNIST's folder")
    figures.add_argument("--k", type=_positive_int, default=8,
                         help="images per row of the lowest/highest-weighted grid")
    return parser


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load_tensorflow_quietly() -> None:
    """Imports TensorFlow and enumerates its devices with the process's stderr muted.

    TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features, a failed ``cuInit``
    on a machine without a GPU) are written by absl before ``TF_CPP_MIN_LOG_LEVEL`` takes
    effect, so the only way to keep them off a command's output is to point file
    descriptor 2 at ``/dev/null`` while they are printed. An import error still surfaces as
    the Python exception. ``TF_CPP_MIN_LOG_LEVEL=0`` or ``1`` (set by the user) shows them.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1"):
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # device start-up (cuInit) logs here, muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_model(command: str, path: Path):
    """The ``.keras`` model at ``--model path``, or a one-line ``SystemExit`` naming the flag."""
    import zipfile

    if not path.is_file():
        what = "is a directory, not" if path.is_dir() else "does not exist: expected"
        raise SystemExit(f"keras-mwat {command}: --model {path} {what} a .keras file (written "
                         "by `keras-mwat train` or `model.save(...)`)")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise SystemExit(f"keras-mwat {command}: --model {path} is not a .keras file (not a zip "
                         "archive written by `model.save(...)`)")
    import keras

    try:
        return keras.models.load_model(path)
    except (ValueError, OSError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(f"keras-mwat {command}: --model {path} cannot be loaded as a Keras "
                         f"model: {reason}") from None


def export(args: argparse.Namespace) -> str:
    """Runs ``keras-mwat export``: the classifier of a ``.keras`` model as a SavedModel."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"keras-mwat export: --out {out} is a file; pass a directory (the "
                         "SavedModel folder, e.g. export/clf/1)")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"keras-mwat export: --out {out} already exists and is not empty; "
                         "pass --overwrite to replace it")
    model = _load_model("export", args.model)
    import keras_mwat as km

    try:
        path = km.export_classifier(model, str(out), input_name=args.input_name,
                                    overwrite=args.overwrite)
    except FileExistsError:
        raise SystemExit(f"keras-mwat export: --out {out} already exists; pass --overwrite to "
                         "replace it") from None
    except (TypeError, ValueError) as error:
        flag = "--input-name" if "input_name" in str(error) else "--model"
        value = args.input_name if flag == "--input-name" else args.model
        raise SystemExit(f"keras-mwat export: {flag} {value}: {error}") from None
    print(f"wrote SavedModel {path} (signature serving_default: {args.input_name} -> "
          "logits, probabilities)")
    return path


def evaluate(args: argparse.Namespace):
    """Runs ``keras-mwat evaluate``: loads a ``.keras`` model, prints and writes the report."""
    import keras_mwat as km

    model = _load_model("evaluate", args.model)
    attack = getattr(model, "attack", None)
    eps = args.eps if args.eps is not None else getattr(attack, "eps", None)
    if eps is None:
        raise SystemExit(f"keras-mwat evaluate: --eps is required: --model {args.model} has no "
                         "training attack to take it from")
    norm = args.norm or getattr(attack, "norm", "linf")
    args.subset = None
    args.test_subset = args.n if args.dataset.startswith("tfds:") else None
    data = _load_data(args)
    output = args.output or args.model.with_suffix(".robustness.json")
    print(f"Evaluating {args.model} on {args.dataset} test ({args.n or len(data.y_test)} "
          f"points), {norm} eps={eps:g}, attacks={args.attacks}, seed={args.seed}")
    try:
        report = km.evaluate_robustness(
            model, (data.x_test, data.y_test), eps=eps, norm=norm, attacks=args.attacks,
            n=args.n, batch_size=args.batch_size, seed=args.seed, value_range=data.value_range,
            checks=not args.no_checks, verbose=args.verbose)
    except ValueError as error:  # e.g. a model whose inputs do not fit the dataset
        raise SystemExit(f"keras-mwat evaluate: --model {args.model} on --dataset "
                         f"{args.dataset}: {error}") from None
    if not args.verbose:
        print(report)
    report.save(output)
    print(f"wrote {output}")
    return report


def figures(args: argparse.Namespace):
    """Runs ``keras-mwat figures``: the PNGs of a compare run; returns the paths written."""
    from keras_mwat import figures as figures_module

    return figures_module.run(args.results, args.out, model_path=args.model, n=args.n,
                              seed=args.seed, dataset=args.dataset, data_dir=args.data_dir,
                              k=args.k)


def tune(args: argparse.Namespace):
    """Runs ``keras-mwat tune`` on the embedded data; prints the best trial.

    MWAT (the paper's BiLAW) learns on a held-out meta set: ``tuning.tune`` splits its
    default size off the training split (500 of the 3,500 digits; a seventh of ``--subset``).
    """
    import keras_mwat as km
    from keras_mwat import tuning

    data = km.data.load_embedded(seed=0)
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
    meta = tuner.hypermodel.meta_data
    print(f"meta set: {len(meta[1])} training samples held out, "
          f"{len(data.y_train) - len(meta[1])} trained on")
    print(f"best val_robust_accuracy {best.score:.4f} with {best.hyperparameters.values}")
    print(f"trials in {tuner.project_dir}")
    return tuner


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with a usage error shown as its one ``error:`` line (exit 2)."""
    import contextlib
    import io

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(argv)
    except SystemExit as exit_:
        lines = captured.getvalue().strip().splitlines()
        if exit_.code in (0, None) or not lines:
            sys.stderr.write(captured.getvalue())
            raise
        # "keras-mwat train: error: argument --eps: must be >= 0, got -1" (usage dropped).
        program, _, message = lines[-1].partition(": error: ")
        print(f"{program}: {message or lines[-1]} (see `{program} --help`)", file=sys.stderr)
        raise SystemExit(2) from None


def _check_dataset_flags(args: argparse.Namespace) -> None:
    """Fails before any work, in one line naming the flags, when the data cannot be read."""
    import logging

    dataset, data_dir = getattr(args, "dataset", None), getattr(args, "data_dir", None)
    if dataset is None or getattr(args, "report_only", False):
        return
    where = f"--data-dir {data_dir}" if data_dir else "the default folder"
    if dataset == "fashion_mnist" and data_dir != "keras":
        from keras_mwat.data.fashion_mnist import DEFAULT_PATH, FILES

        folder = Path(data_dir) if data_dir else DEFAULT_PATH
        missing = [name for name in FILES.values()
                   if not any((folder / n).is_file() for n in (name, name.removesuffix(".gz")))]
        if missing:
            raise SystemExit(
                f"keras-mwat {args.command}: --dataset fashion_mnist: no Fashion-MNIST in "
                f"{folder} (missing {', '.join(missing)}); install it with `sudo apt-get "
                f"install dataset-fashion-mnist` (files in {DEFAULT_PATH}, read without "
                "--data-dir), or pass --data-dir a folder holding the four IDX files, or "
                "--data-dir keras to download them")
    elif dataset.startswith("tfds:"):
        from keras_mwat.data.tfds import dataset_info

        name = dataset[len("tfds:"):]
        absl_logger = logging.getLogger("absl")  # TFDS logs a warning per missing folder
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            info = dataset_info(name, data_dir=data_dir)
        except ImportError as error:
            raise SystemExit(f"keras-mwat {args.command}: --dataset {dataset}: {error}") from None
        except (TypeError, ValueError) as error:
            raise SystemExit(f"keras-mwat {args.command}: --dataset {dataset} in {where}: "
                             f"{error}") from None
        finally:
            absl_logger.setLevel(level)
        if not info["prepared"]:
            base = name.split(":", 1)[0]
            raise SystemExit(
                f"keras-mwat {args.command}: --dataset {dataset} is not prepared in {where}; "
                f"prepare it on a machine with internet access with `tfds build {base} "
                "--data_dir DIR`, copy DIR here and pass --data-dir DIR")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keras-mwat`` command.

    A user error (a usage error, a missing or unreadable ``--model``, an existing ``--out``,
    data that is not there, an optional dependency that is not installed) ends the command
    with one line on stderr naming the flag or the extra to install and a non-zero exit
    status, never a traceback.
    """
    _quiet_tensorflow()
    args = _parse(build_parser(), argv)
    commands = {"train": train, "evaluate": evaluate, "compare": compare, "export": export,
                "tune": tune, "figures": figures, "paper-eval": paper_eval}
    _check_dataset_flags(args)
    _load_tensorflow_quietly()
    import keras_mwat

    keras_mwat.load()  # a no-op unless launched lazily (keras_mwat_cli): register the classes
    from keras_mwat._optional import MissingExtraError

    try:
        commands[args.command](args)
    except MissingExtraError as error:  # e.g. `tune` without keras-tuner: name the extra
        raise SystemExit(f"keras-mwat {args.command}: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
