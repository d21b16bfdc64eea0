"""Datasets: the embedded MNIST sample (offline), Fashion-MNIST, TFDS, held-out splits."""

from keras_mwat.data.embedded import EmbeddedData, load_embedded
from keras_mwat.data.fashion_mnist import FashionMNISTData, load_fashion_mnist
from keras_mwat.data.holdout import holdout_split
from keras_mwat.data.splits import ImageSplits
from keras_mwat.data.tfds import load_tfds

__all__ = [
    "EmbeddedData",
    "FashionMNISTData",
    "ImageSplits",
    "holdout_split",
    "load_embedded",
    "load_fashion_mnist",
    "load_tfds",
]
