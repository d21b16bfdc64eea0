"""MART (Wang et al., 2020): misclassification-aware adversarial training.

``BCE(f(x_adv), y) + beta * KL(p_nat || p_adv) * (1 - p_nat[y])`` with the boosted CE
``CE(f(x_adv), y) - log(1.0001 - p_adv[y'])`` (y' the most likely wrong class); the attack is
PGD on the cross-entropy.
"""

from __future__ import annotations

import keras

from keras_mwat.methods.base import AdversarialTrainingModel
from keras_mwat.objectives import MARTObjective


@keras.saving.register_keras_serializable(package="keras_mwat")
class MARTModel(AdversarialTrainingModel):
    """MART adversarial training.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack (PGD on the cross-entropy).
        beta: Weight of the misclassification-aware KL term (5 or 6 in the paper).
        seed: Seed of the in-graph randomness.

    Example:
    ```python
    model = keras_mwat.MARTModel(keras_mwat.zoo.small_cnn(), beta=6.0)
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, beta: float = 6.0, seed=None, **kwargs):
        super().__init__(classifier, attack=attack, objective=MARTObjective(beta), seed=seed,
                         **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), **self.objective.get_config()}
