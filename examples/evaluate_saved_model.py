"""Evaluate a saved ``.keras`` model's robustness with a cascade of attacks.

``km.evaluate_robustness`` runs attacks in cascade (each only on the points still classified
correctly, keeping the per-sample worst case), checks for signs of gradient masking (each
one warned as a ``km.GradientMaskingWarning`` and stored in the report) and returns a
``km.RobustnessReport`` that keeps every number next to its settings.

    python examples/train_embedded.py --save runs/mwat.keras
    python examples/evaluate_saved_model.py --model runs/mwat.keras                  # standard
    python examples/evaluate_saved_model.py --model runs/mwat.keras --attacks quick --n 200
    python examples/evaluate_saved_model.py --model runs/mwat.keras --tiny           # smoke test

Presets: ``quick`` = PGD-20 x 2 restarts + APGD-CE; ``standard`` = APGD-CE, APGD-T, CW-PGD,
Square; ``autoattack`` = AutoAttack's standard suite (the paper's "AA"). The default radius
is the paper's MNIST one, L-inf eps 0.1, the radius ``train_embedded.py`` trains at.
Evaluation needs only the classifier: a saved MWAT (BiLAW) model loads and is evaluated
without its held-out meta set (only training it further needs ``model.set_meta_data``).
The model is evaluated on the embedded MNIST test split, or on the "test" split of
a prepared TFDS dataset (``--dataset tfds:cifar10 --data-dir DIR --eps 0.03137``). The
report is written as JSON with ``--json`` and read back with ``RobustnessReport.load``.
The command ``keras-mwat evaluate`` does the same.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mwat as km  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras file (a keras_mwat method "
                                                       "model or a plain logits classifier)")
    parser.add_argument("--dataset", default="embedded",
                        help="'embedded' (MNIST digits shipped offline) or 'tfds:NAME' "
                             "(prepared in --data-dir; never downloads)")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=0.1,
                        help="attack radius (default: the paper's MNIST L-inf 0.1)")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf")
    parser.add_argument("--attacks", choices=("quick", "standard", "autoattack"),
                        default="standard")
    parser.add_argument("--n", type=int, default=None,
                        help="evaluate on the first n test points (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", default=None, help="write the report to this JSON file")
    parser.add_argument("--tiny", action="store_true",
                        help="the quick preset on 32 test digits, no masking checks: "
                             "a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.attacks, args.n = "quick", 32
    return args


def test_split(args):
    """The test inputs and labels as arrays (at most ``args.n`` of them)."""
    if args.dataset == "embedded":
        data = km.data.load_embedded(seed=args.seed)
        return data.x_test, data.y_test
    if not args.dataset.startswith("tfds:"):
        raise SystemExit(f"--dataset must be 'embedded' or 'tfds:NAME', got {args.dataset!r}")
    xs, ys = [], []
    for x, y in km.data.load_tfds(args.dataset[len("tfds:"):], split="test",
                                  data_dir=args.data_dir, batch_size=512, shuffle=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
        if args.n and sum(map(len, ys)) >= args.n:
            break
    return np.concatenate(xs), np.concatenate(ys)


def main(argv=None):
    args = parse_args(argv)
    # A keras_mwat training model (its classifier is evaluated) or a plain logits model.
    model = keras.models.load_model(args.model)
    x_test, y_test = test_split(args)

    report = km.evaluate_robustness(model, (x_test, y_test), eps=args.eps, norm=args.norm,
                                    attacks=args.attacks, n=args.n,
                                    batch_size=args.batch_size, seed=args.seed,
                                    checks=not args.tiny, verbose=0)
    print(report)  # a table: clean, each attack of the cascade, worst case, warnings
    if args.json:
        report.save(args.json)
        again = km.RobustnessReport.load(args.json)  # numbers travel with their settings
        assert again.robust_accuracy == report.robust_accuracy
        print(f"wrote {args.json}")

    print(f"clean accuracy:  {report.clean_accuracy:.4f}  ({report.n} test points)")
    print(f"robust accuracy: {report.robust_accuracy:.4f}  (preset {args.attacks!r}, "
          f"{args.norm} eps={args.eps:g}, worst case over the cascade)")
    return report


if __name__ == "__main__":
    main()
