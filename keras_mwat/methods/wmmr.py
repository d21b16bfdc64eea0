"""WMMR (Zeng et al., 2021): weights ``exp(-alpha * m)`` of the Definition 2.2 margin.

The margin is taken on the adversarial logits; weights are normalised to mean 1 over the
global batch (an [OURS] choice: the formula fixes the weights only up to scale).
"""

from __future__ import annotations

import keras

from keras_mwat import weightings
from keras_mwat.methods.base import AdversarialTrainingModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class WMMRModel(AdversarialTrainingModel):
    """Weighted minimax risk: exponential margin weights on PGD-AT's cross-entropy.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack.
        alpha: Sharpness of the exponential weighting.
        reweight_start_epoch: Uniform weights before this epoch (counted from 0).
        seed: Seed of the in-graph randomness.

    Example:
    ```python
    model = keras_mwat.WMMRModel(keras_mwat.zoo.small_cnn(), alpha=1.0)
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, alpha: float = 1.0,
                 reweight_start_epoch: int = 0, seed=None, **kwargs):
        super().__init__(classifier, attack=attack, weighting=weightings.WMMRWeighting(alpha),
                         reweight_start_epoch=reweight_start_epoch, seed=seed, **kwargs)
        self.alpha = self.weighting.alpha

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}
