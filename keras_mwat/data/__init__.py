"""Datasets: the embedded MNIST sample (offline) and its stratified splits."""

from keras_mwat.data.embedded import EmbeddedData, load_embedded
from keras_mwat.data.tfds import load_tfds

__all__ = ["EmbeddedData", "load_embedded", "load_tfds"]
