"""Small models and data shared by the method tests."""

import keras
import numpy as np

import keras_mwat as km


def make_cnn(batch_norm=False, seed=0):
    keras.utils.set_random_seed(seed)
    return km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=4,
                            batch_norm=batch_norm)


def deterministic_attack(steps=2):
    return km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=steps, random_start=False)


def clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]
