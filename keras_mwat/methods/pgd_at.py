"""PGD-AT (Madry et al., 2018): mean cross-entropy on PGD examples, uniform weights."""

from __future__ import annotations

import keras

from keras_mwat.methods.base import AdversarialTrainingModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class PGDATModel(AdversarialTrainingModel):
    """PGD adversarial training: ``mean_i CE(f(x_adv_i), y_i)``.

    The reference every reweighting method is compared with. Takes the arguments of
    ``AdversarialTrainingModel`` (``classifier``, ``attack``, ``seed``).

    Example:
    ```python
    model = keras_mwat.PGDATModel(keras_mwat.zoo.small_cnn(),
                                  attack=keras_mwat.attacks.PGD(eps=0.3, step_size=0.075))
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, seed=None, **kwargs):
        super().__init__(classifier, attack=attack, seed=seed, **kwargs)
