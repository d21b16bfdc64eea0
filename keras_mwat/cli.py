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
import contextlib
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_COMPARE = "mwat,pgd_at,trades,mart,mail,gairat"
#: Classifiers of ``--model`` (``km.zoo`` builders).
MODELS = ("small_cnn", "tiny_cnn", "fc1", "mlp", "cifar_small_cnn", "wide_resnet")
#: Held-out meta set of the bilevel methods: the paper's 1,000; 500 of the 3,500 embedded.
META_SIZE, EMBEDDED_META_SIZE = 1000, 500


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


def _spec_overrides(name: str, spec: str, assignments: list[str], accepted: set) -> dict:
    """The ``key=value`` parts of a model or method spec as keyword arguments: values are
    Python literals or, failing that, strings; keys must be in ``accepted``."""
    import ast

    overrides = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value after {name!r} in {spec!r}, got "
                             f"{assignment!r}")
        if key not in accepted:
            raise ValueError(f"{name} takes no argument {key!r} (in {spec!r}); it takes "
                             f"{sorted(accepted)}")
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """Splits a classifier spec ``NAME`` or ``NAME:key=value[:key=value...]`` into
    ``(name, overrides)``: a ``km.zoo`` builder of ``MODELS`` and keyword arguments for it.

    Values are Python literals (``10``, ``True``), else strings. ``input_shape`` and
    ``num_classes`` come from the data and cannot be given. Unknown models and arguments
    the builder does not take raise ``ValueError``.

    Example:

    ```python
    parse_model_spec("wide_resnet:depth=10:widen_factor=1")
    # ("wide_resnet", {"depth": 10, "widen_factor": 1})
    ```
    """
    import inspect

    from keras_mwat import zoo

    name, *assignments = [part.strip() for part in str(spec).split(":")]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} in {spec!r}; choose from {list(MODELS)}")
    accepted = set(inspect.signature(getattr(zoo, name)).parameters)
    accepted -= {"input_shape", "num_classes"}
    return name, _spec_overrides(name, spec, assignments, accepted)


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


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """Splits a method spec ``NAME`` or ``NAME:key=value[:key=value...]`` (an ablation
    variant: constructor arguments of the method) into ``(name, overrides)``.

    Values are Python literals (``3``, ``0.5``, ``None``) or, failing that, strings. Unknown
    methods and arguments the method's constructor does not take raise ``ValueError``; so
    do object arguments (``meta_data``, ``weight_net``, ``meta_optimizer``). With
    ``meta_source=dataset`` the commands pass the validation split as ``meta_data``.

    Example:

    ```python
    parse_method_spec("mwat:meta_objective=adversarial:reweight_start_epoch=3")
    # ("mwat", {"meta_objective": "adversarial", "reweight_start_epoch": 3})
    ```
    """
    import inspect

    from keras_mwat import registry

    name, *assignments = [part.strip() for part in str(spec).split(":")]
    if name not in registry.METHOD_CLASSES:
        raise ValueError(f"unknown method {name!r} in {spec!r}; choose from "
                         f"{list(registry.method_names())}")
    if not assignments:  # the name alone is checked without loading TensorFlow
        return name, {}
    accepted = set()
    for klass in registry.method_class(name).__mro__:  # a subclass may pass **kwargs on (MWN to MWAT)
        if "__init__" in vars(klass) and klass.__module__.startswith("keras_mwat"):
            accepted |= set(inspect.signature(vars(klass)["__init__"]).parameters)
    accepted -= {"self", "classifier", "attack", "seed", "kwargs", "meta_data",
                 "weight_net", "meta_optimizer"}
    return name, _spec_overrides(name, spec, assignments, accepted)


def _build_method(spec: str, classifier, attack, data, seed=None, meta_size=META_SIZE):
    """The method of ``spec`` around ``classifier`` and the data it trains on.

    A method that needs a held-out meta set (MWAT's family and MWN with their default
    ``meta_source="dataset"``) gets ``meta_size`` samples split off the training split (the
    same ones for every seed); its training split is that much smaller, as in the paper.
    Returns ``(model, data)``.
    """
    import keras_mwat as km

    name, overrides = parse_method_spec(spec)
    model = km.METHODS[name](classifier, attack=attack, seed=seed, **overrides)
    if getattr(model, "has_meta_set", True):
        return model, data
    data = _with_meta_set(data, meta_size)
    model.set_meta_data(data.meta)
    return model, data


def _run_name(spec: str) -> str:
    """Directory name of a method spec (``:`` is not portable in paths)."""
    return spec.replace(":", "+")


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
        self._end = train_size - train_size // 10  # absolute indices: tfds reads a mixed
        self.train_split = f"train[:{self._end}]"  # slice "train[16:90%]" as percents
        self.validation_split = f"train[{self._end}:]"
        self.y_train = np.zeros(self._end)  # only its length is used
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

    def with_meta(self, size: int):
        """A copy whose first ``size`` training examples are a held-out meta set (``.meta``
        arrays; the first ones, not stratified) and no longer trained on."""
        import copy

        import numpy as np

        if size >= len(self.y_train):
            raise SystemExit(f"keras-mwat: --meta-size {size} must be smaller than the "
                             f"{len(self.y_train)} training examples")
        xs, ys = [], []
        for x, y in self._split(f"train[:{size}]", 512, shuffle=False):
            xs.append(x.numpy())
            ys.append(y.numpy())
        data = copy.copy(self)
        data.meta = (np.concatenate(xs), np.concatenate(ys))
        data.y_meta = data.meta[1]
        data.train_split = f"train[{size}:{self._end}]"
        data.y_train = self.y_train[size:]
        return data

    def train_dataset(self, batch_size=128, seed=0):
        return self._split(self.train_split, batch_size, shuffle=True, seed=seed)

    @property
    def x_val(self):
        """The validation split's images as an array (read on first use; for the
        best-checkpoint selection of ``compare`` and ``train --select best``)."""
        return self._validation_arrays()[0]

    @property
    def y_val(self):
        """The validation split's labels as an array."""
        return self._validation_arrays()[1]

    def _validation_arrays(self):
        import numpy as np

        if getattr(self, "_validation", None) is None:
            batches = [(x.numpy(), y.numpy())
                       for x, y in self._split(self.validation_split, 512, shuffle=False)]
            self._validation = (np.concatenate([x for x, _ in batches]),
                                np.concatenate([y for _, y in batches]))
        return self._validation

    def validation_dataset(self, batch_size=128):
        return self._split(self.validation_split, batch_size, shuffle=False)


def _load_data(args):
    import keras_mwat as km

    if args.dataset.startswith("tfds:"):
        return TFDSSplits(args.dataset[len("tfds:"):], data_dir=args.data_dir,
                          test_limit=args.test_subset)
    if args.dataset == "fashion_mnist":
        try:
            # The last 1,000 of the paper's held-out sets: the early-stopping (validation)
            # split, stratified, the same for every seed and method.
            data = km.data.load_fashion_mnist(path=args.data_dir, validation_size=1000, seed=0)
        except FileNotFoundError as error:
            raise SystemExit(f"keras-mwat: --dataset fashion_mnist: {error}") from None
    elif args.dataset == "embedded":
        # One fixed split for every run: --seed changes the initial weights, the data order
        # and the attacks, never which digits are test digits (a model trained with any seed
        # can be evaluated on the same, unseen test split).
        data = km.data.load_embedded(seed=0)
    else:
        raise SystemExit(f"keras-mwat: --dataset must be 'embedded', 'fashion_mnist' or "
                         f"'tfds:NAME', got {args.dataset!r}")
    if getattr(args, "subset", None) or getattr(args, "test_subset", None):
        data = data.subset(train=args.subset, validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=0)
    return data


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
        model, data = _build_method(method, classifier, train_attack, data, seed=args.seed,
                                    meta_size=_meta_size(args, len(data.y_train)))
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


def _read_history(path: Path) -> dict:
    """The per-epoch logs of a ``CSVLogger`` file as ``{name: [values]}`` (no epoch column)."""
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [name for name in (rows[0] if rows else {}) if name != "epoch"]
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in names}


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
    which defaults a run had, whatever the defaults are later."""
    return {key: value for key, value in model.get_config().items()
            if value is None or isinstance(value, (str, int, float, bool))}


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
    import logging

    logging.getLogger("tensorflow").addFilter(_NewModelTraceFilter())
    data, train_attack = _prepare(args)
    seeds = args.seeds or [args.seed]
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
    if args.paper_cell is not None:
        _write_side_by_side(run_dir, args.paper_cell)
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
    return report


def _write_side_by_side(run_dir: Path, cell: str) -> str:
    """Writes and prints ``run_dir/side_by_side.md``: ours next to the paper's ``cell``."""
    from keras_mwat.experiments import side_by_side

    text = side_by_side.report(run_dir, cell)
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
