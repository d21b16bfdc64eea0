"""GAIRAT (Zhang et al., 2021): geometry-aware instance-reweighted adversarial training.

kappa_i is the number of PGD steps during which x_i stays correctly classified, counted in
the graph inside the attack loop and returned in the attack's trace
(``Attack.perturb_with_trace``, ``AttackTrace.correct_steps``); ``w = (tanh(lam + 5 (floor(K/2) - kappa) / floor(K/2)) + 1)/2``,
normalised to mean 1; uniform weights before ``reweight_start_epoch``.
"""

from __future__ import annotations

import keras

from keras_mwat import weightings
from keras_mwat.methods.base import AdversarialTrainingModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class GAIRATModel(AdversarialTrainingModel):
    """GAIRAT on PGD-AT's cross-entropy.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: A PGD attack (its ``num_steps`` is GAIRAT's K; any attack whose
            ``records_trace`` is True).
        lam: The tanh offset lambda (reference -1).
        reweight_start_epoch: Uniform weights before this epoch (counted from 0).
        seed: Seed of the in-graph randomness.

    Example:
    ```python
    model = keras_mwat.GAIRATModel(keras_mwat.zoo.small_cnn(), lam=-1.0, reweight_start_epoch=2)
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=4)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, lam: float = -1.0,
                 reweight_start_epoch: int = 0, seed=None, **kwargs):
        super().__init__(classifier, attack=attack, weighting=weightings.GAIRATWeighting(lam),
                         reweight_start_epoch=reweight_start_epoch, seed=seed, **kwargs)
        self.lam = self.weighting.lam

    def get_config(self) -> dict:
        return {**super().get_config(), "lam": self.lam}
