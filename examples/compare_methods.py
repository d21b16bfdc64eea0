"""Compare MWAT with the baselines on equal footing: same data, initial weights, attack, seed.

Every method in ``km.METHODS`` shares one training step and differs only in its loss and its
sample weights, so a comparison is a short loop. Each method starts from the *same* initial
classifier weights, trains with the same PGD attack, optimizer and budget, and is evaluated
with the same attacks on the same test digits. The setting is the paper's for MNIST:
tiny-CNN, L-inf eps 0.1, PGD-10 with step eps/4, SGD 0.1 with momentum 0.9 (with a 3-epoch
radius warm-up, ours: without it even PGD-AT stays at chance on this small data set).

MWAT with its defaults is the paper's BiLAW: it learns its weight network on a **held-out
meta set**, 500 of the 3,500 training digits here (the paper: 1,000), which it does not
train on. As in the paper, the methods that need a meta set (``mwat``, ``mwat_trades``,
``mwat_nonparametric``, ``mwn``) train on the remaining digits and the others on all of
them; the table shows each method's number of training digits.

    python examples/compare_methods.py                                  # 6 methods, 10 epochs
    python examples/compare_methods.py --methods mwat,pgd_at,trades --epochs 5
    python examples/compare_methods.py --evaluation standard            # AutoAttack-grade
    python examples/compare_methods.py --tiny                           # a smoke test

``--evaluation pgd`` (default) attacks with PGD-20 x 2 restarts; ``quick`` and ``standard``
run ``km.evaluate_robustness``'s presets (cascades of attacks; see docs/evaluation.md).
The ``keras-mwat compare`` command does the same and also writes JSON and Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mwat as km  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="mwat,pgd_at,trades,mart,mail,gairat",
                        help=f"comma-separated, from {','.join(km.METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--subset", type=int, default=None,
                        help="training digits, meta set included (default all)")
    parser.add_argument("--meta-size", type=int, default=500,
                        help="digits held out as the meta set of the methods that need one")
    parser.add_argument("--test-subset", type=int, default=None, help="test digits (default all)")
    parser.add_argument("--eps", type=float, default=0.1,
                        help="L-inf radius (the paper's for MNIST: 0.1)")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD (momentum 0.9) learning rate")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--evaluation", choices=("pgd", "quick", "standard"), default="pgd")
    parser.add_argument("--tiny", action="store_true",
                        help="mwat and pgd_at, 2 epochs on 512 digits (64 held out), PGD-2: "
                             "a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.methods, args.epochs, args.subset, args.test_subset = "mwat,pgd_at", 2, 512, 64
        args.train_steps, args.eval_steps, args.batch_size, args.meta_size = 2, 5, 32, 64
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(km.METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {sorted(km.METHODS)}")
    return args


def evaluate(classifier, data, args) -> dict:
    """Clean and robust accuracy of a logits classifier on the test split."""
    x, y = data.x_test, data.y_test
    if args.evaluation != "pgd":
        report = km.evaluate_robustness(classifier, (x, y), eps=args.eps, norm="linf",
                                        attacks=args.evaluation, seed=args.seed)
        return {"clean": report.clean_accuracy, "robust": report.robust_accuracy}
    attack = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.eval_steps,
                            num_steps=args.eval_steps, num_restarts=2,
                            value_range=data.value_range, seed=args.seed)
    x_adv = attack(classifier, x, y, batch_size=256)
    return {"clean": float(np.mean(classifier.predict(x, verbose=0).argmax(1) == y)),
            "robust": float(np.mean(classifier.predict(x_adv, verbose=0).argmax(1) == y))}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset,
                           validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)

    # The meta set of the methods that need one, split off the training digits once.
    with_meta = data.with_holdout(meta=args.meta_size, early_stopping=0, seed=args.seed)

    keras.utils.set_random_seed(args.seed)
    reference = km.zoo.tiny_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    initial_weights = reference.get_weights()
    attack = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.train_steps,
                            num_steps=args.train_steps, value_range=data.value_range)

    rows = []
    for name in args.methods:
        print(f"== {name}")
        keras.utils.set_random_seed(args.seed)
        classifier = km.zoo.tiny_cnn(input_shape=data.input_shape,
                                     num_classes=data.num_classes)
        classifier.set_weights(initial_weights)  # every method starts from the same point
        model = km.METHODS[name](classifier, attack=attack, seed=args.seed)
        trained_on = data
        if not getattr(model, "has_meta_set", True):  # MWAT (BiLAW), MWN, ...
            model.set_meta_data(with_meta.meta)
            trained_on = with_meta
        model.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9))
        started = time.time()
        model.fit(trained_on.train_dataset(batch_size=args.batch_size, seed=args.seed),
                  validation_data=data.validation_dataset(batch_size=args.batch_size),
                  epochs=args.epochs, verbose=2,
                  callbacks=[km.callbacks.EpsilonWarmup(epochs=max(min(3, args.epochs), 1))])
        seconds = time.time() - started
        rows.append({"method": name, **evaluate(model.classifier, data, args),
                     "train_digits": len(trained_on.y_train), "seconds": seconds})

    label = {"pgd": f"PGD-{args.eval_steps} x 2", "quick": "quick preset",
             "standard": "standard preset"}[args.evaluation]
    print(f"\n| method | clean accuracy | robust accuracy ({label}, L-inf {args.eps:g}) "
          "| training digits | training s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['clean']:.4f} | {row['robust']:.4f} "
              f"| {row['train_digits']} | {row['seconds']:.1f} |")
    print(f"\n{len(data.y_test)} test digits, {len(data.y_train)} training digits "
          f"({len(with_meta.y_meta)} of them held out as the meta set where one is needed), "
          f"{args.epochs} epoch(s), seed {args.seed}")
    return rows


if __name__ == "__main__":
    main()
