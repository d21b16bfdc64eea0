"""Write a tiny CIFAR-shaped dataset in the TensorFlow Datasets format, to try train_tfds.py.

``train_tfds.py`` reads prepared TFDS data and never downloads. To try it offline, this
script stores random 32x32x3 uint8 images with 10 classes (``train`` and ``test`` splits)
under ``DATA_DIR/NAME/1.0.0`` with ``tfds.dataset_builders.store_as_tfds_dataset``, the same
way you would store a dataset of your own:

    python examples/make_tiny_tfds.py /tmp/tfds                 # writes tiny_cifar
    python examples/train_tfds.py --dataset tiny_cifar --data-dir /tmp/tfds --tiny

``train_tfds.py --tiny`` holds the first 16 training images out as MWAT's meta set, trains
on the next 56 and validates on the last 8. The images are noise: the accuracies mean
nothing.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="TFDS data directory to write to")
    parser.add_argument("--name", default="tiny_cifar")
    parser.add_argument("--train", type=int, default=80, help="training images")
    parser.add_argument("--test", type=int, default=40, help="test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    total = args.train + args.test
    images = rng.integers(0, 256, size=(total, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(total) % 10).astype(np.int64)
    rng.shuffle(labels)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(32, 32, 3)),
        "label": tfds.features.ClassLabel(num_classes=10),
    })
    splits = {
        "train": tf.data.Dataset.from_tensor_slices(
            {"image": images[:args.train], "label": labels[:args.train]}),
        "test": tf.data.Dataset.from_tensor_slices(
            {"image": images[args.train:], "label": labels[args.train:]}),
    }
    tfds.disable_progress_bar()
    tfds.dataset_builders.store_as_tfds_dataset(
        name=args.name, version="1.0.0", features=features, split_datasets=splits,
        data_dir=args.data_dir)
    print(f"wrote TFDS dataset {args.name!r} ({args.train} train, {args.test} test) "
          f"to {args.data_dir}")
    return args.name


if __name__ == "__main__":
    main()
