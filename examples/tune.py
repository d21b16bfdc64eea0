"""Tune MWAT's (the paper's BiLAW's) hyperparameters with Keras Tuner, by validation robust accuracy.

``km.tuning.tune`` runs a ``keras_tuner.RandomSearch`` over ``km.tuning.MWATHyperModel``'s
search space, the knobs of the paper's algorithm: the classifier's SGD learning rate β (also
the pseudo step's), the weight network's step size α and its hidden units; everything else
is ``km.MWATModel``'s defaults, the paper's BiLAW. The threat model is fixed (L-inf eps 0.1,
the paper's for MNIST; PGD-10 with step eps/4). MWAT learns its weight network on a
held-out meta set: here 500 of the 3,500 training digits, split off once
(``data.with_holdout``) and shared by every trial, which trains on the rest. Each trial is
scored by its best ``val_robust_accuracy``; the best model is evaluated on the test split.

    python examples/tune.py --max-trials 5 --epochs 3
    python examples/tune.py --tiny            # 2 trials of 1 epoch on 160 digits: a smoke test

Prints the best hyperparameters, ``best val_robust_accuracy: ...`` and the test
``clean accuracy`` / ``robust accuracy`` of the best model.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_mwat as km  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--subset", type=int, default=None,
                        help="training digits, meta set included (default all)")
    parser.add_argument("--meta-size", type=int, default=500,
                        help="training digits held out as MWAT's meta set (the paper: 1,000)")
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--eps", type=float, default=0.1,
                        help="L-inf radius (the paper's for MNIST: 0.1)")
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--directory", default=None,
                        help="Keras Tuner directory (default: a new temporary directory)")
    parser.add_argument("--tiny", action="store_true",
                        help="2 trials of 1 epoch on 160 digits (32 held out), PGD-1: "
                             "a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.max_trials, args.epochs, args.subset, args.test_subset = 2, 1, 160, 64
        args.attack_steps, args.batch_size, args.meta_size = 1, 32, 32
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset,
                           validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)
    # MWAT's meta set, held out of the training digits; the trials train on the rest.
    data = data.with_holdout(meta=args.meta_size, early_stopping=0, seed=args.seed)
    print(f"data: {data}")
    directory = args.directory or tempfile.mkdtemp(prefix="keras_mwat_tune_")

    tuner = km.tuning.tune(
        data, max_trials=args.max_trials, epochs=args.epochs, directory=directory,
        seed=args.seed, batch_size=args.batch_size, eps=args.eps,
        attack_steps=args.attack_steps,
        # Ours, not the paper's: without a warm-up of the radius, SGD 0.1 on this small
        # data set can leave adversarial training at chance.
        callbacks=[km.callbacks.EpsilonWarmup(epochs=1)],
    )
    best_trial = tuner.oracle.get_best_trials(1)[0]
    print(f"trials in {tuner.project_dir}")
    print(f"best hyperparameters: {best_trial.hyperparameters.values}")
    print(f"best val_robust_accuracy: {best_trial.score:.4f}")

    model = tuner.get_best_models(1)[0]  # a trained MWATModel, its meta set attached
    attack = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / 20, num_steps=20,
                            value_range=data.value_range, seed=args.seed)
    x_adv = attack(model.classifier, data.x_test, data.y_test, batch_size=256)
    clean = float(np.mean(model.predict(data.x_test, verbose=0).argmax(1) == data.y_test))
    robust = float(np.mean(model.predict(x_adv, verbose=0).argmax(1) == data.y_test))
    print(f"clean accuracy:  {clean:.4f}  (best model, {len(data.y_test)} test digits)")
    print(f"robust accuracy: {robust:.4f}  (PGD-20, L-inf eps={args.eps:g})")
    return {"best_hyperparameters": best_trial.hyperparameters.values,
            "clean_accuracy": clean, "robust_accuracy": robust}


if __name__ == "__main__":
    main()
