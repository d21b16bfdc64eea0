"""Datasets: the embedded MNIST sample (offline) and its stratified splits."""

from keras_mwat.data.embedded import EmbeddedData, load_embedded

__all__ = ["EmbeddedData", "load_embedded"]
