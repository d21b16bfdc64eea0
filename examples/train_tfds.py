"""Train MWAT (the paper's BiLAW) or a baseline on a prepared TFDS dataset (CIFAR-10 default).

For users who have the data prepared in a TFDS data directory: nothing is downloaded.
Prepare CIFAR-10 once on a machine with internet access, then copy the directory if needed:

    python -c "import keras_mwat as km; km.data.load_tfds('cifar10', data_dir='DIR', download=True)"

and train (L-inf eps 8/255, PGD-10 with step 2/255, the common CIFAR-10 protocol):

    python examples/train_tfds.py --dataset cifar10 --data-dir DIR --epochs 30
    python examples/train_tfds.py --dataset cifar10 --data-dir DIR --tiny   # a smoke test

``km.MWATModel`` with its defaults is the paper's BiLAW, which trains its weight network on
a **held-out meta set**: the first ``--meta-size`` images of the "train" split (the paper:
1,000), read into arrays and passed as ``meta_data=``; the model trains on the rest. (A
streamed ``tf.data`` split cannot be split by class cheaply, hence the first images; shuffle
them first if your split is ordered by class, or use ``km.data.holdout_split`` on arrays.)
The same applies to every method that needs a meta set (``mwat_trades``,
``mwat_nonparametric``, ``mwn``); the other baselines train on all the training images.
Training uses the first 90% of the "train" split (less the meta set), validation the last
10%, evaluation the "test" split. Prints ``clean accuracy: ...`` and ``robust accuracy: ...``
on the last lines.
"""

from __future__ import annotations

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mwat as km  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", help="TFDS name, e.g. cifar10, mnist")
    parser.add_argument("--data-dir", default=None,
                        help="TFDS data_dir holding the prepared data (default: TFDS's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eps", type=float, default=8 / 255, help="L-inf radius")
    parser.add_argument("--step-size", type=float, default=2 / 255, help="PGD step size")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--method", choices=sorted(km.METHODS), default="mwat",
                        help="training method (default mwat; the baselines for comparison)")
    parser.add_argument("--model", choices=("small_cnn", "small_resnet"), default="small_cnn")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD (momentum 0.9) learning rate")
    parser.add_argument("--meta-size", type=int, default=1000,
                        help="first training images held out as the meta set of MWAT (and "
                             "the other methods that need one)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on the first batches holding at most this many samples")
    parser.add_argument("--test-subset", type=int, default=1000,
                        help="evaluate on at most this many test samples")
    parser.add_argument("--save", default=None, help="write the trained model to this .keras file")
    parser.add_argument("--tiny", action="store_true",
                        help="1 epoch on 64 samples (16 more held out), PGD-2, 32 test samples: "
                             "a smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.subset, args.test_subset, args.batch_size = 1, 64, 32, 32
        args.meta_size = 16
        args.train_steps, args.eval_steps = 2, 3
    return args


def arrays(dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, y)`` batches of ``dataset`` as two arrays (at most ``limit`` samples)."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
        if limit is not None and sum(map(len, ys)) >= limit:
            break
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def main(argv=None) -> dict:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)

    # What the classifier needs, read from the dataset's metadata (no data is read).
    info = km.data.tfds.dataset_info(args.dataset, data_dir=args.data_dir)
    print(f"{info['name']} {info['version']}: input {info['input_shape']}, "
          f"{info['num_classes']} classes, splits {info['num_examples']}")

    def split(name, shuffle):
        return km.data.load_tfds(args.dataset, split=name, data_dir=args.data_dir,
                                 batch_size=args.batch_size, shuffle=shuffle, seed=args.seed)

    # Absolute slices: TFDS reads "train[16:90%]" as "train[16%:90%]".
    num_train = info["num_examples"].get("train")
    if not num_train:
        split("train", False)  # not prepared: the loader's error says how to prepare it
        raise SystemExit(f"{args.dataset} has no 'train' split: {info['num_examples']}")
    validation_start = round(0.9 * num_train)
    builder = getattr(km.zoo, args.model)
    classifier = builder(input_shape=info["input_shape"], num_classes=info["num_classes"])
    attack = km.attacks.PGD(eps=args.eps, step_size=args.step_size, num_steps=args.train_steps,
                            value_range=(0.0, 1.0))
    model = km.METHODS[args.method](classifier, attack=attack, seed=args.seed)
    meta_size = 0
    if not getattr(model, "has_meta_set", True):  # e.g. MWAT: needs its held-out meta set
        meta_size = args.meta_size
        if not 0 < meta_size < validation_start:
            raise SystemExit(f"--meta-size must be in [1, {validation_start - 1}] (the first "
                             f"90% of the {num_train} training images), got {meta_size}")
        model.set_meta_data(arrays(split(f"train[:{meta_size}]", False)))
        print(f"meta set: the first {meta_size} training images, not trained on")
    train = split(f"train[{meta_size}:{validation_start}]", True)
    validation = split(f"train[{validation_start}:]", False)
    if args.subset:
        batches = math.ceil(args.subset / args.batch_size)
        train, validation = train.take(batches), validation.take(batches)
    x_test, y_test = arrays(split("test", False), limit=args.test_subset)

    model.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9))
    model.fit(train, validation_data=validation, epochs=args.epochs, verbose=2,
              callbacks=[km.callbacks.EpsilonWarmup(epochs=max(min(5, args.epochs), 1))])

    strong = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / args.eval_steps,
                            num_steps=args.eval_steps, value_range=(0.0, 1.0), seed=args.seed)
    x_adv = strong(model.classifier, x_test, y_test, batch_size=256)
    clean = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test))
    robust = float(np.mean(model.predict(x_adv, verbose=0).argmax(1) == y_test))
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    print(f"clean accuracy:  {clean:.4f}  ({len(y_test)} test samples)")
    print(f"robust accuracy: {robust:.4f}  (PGD-{args.eval_steps}, L-inf eps={args.eps:.4g})")
    return {"clean_accuracy": clean, "robust_accuracy": robust}


if __name__ == "__main__":
    main()
