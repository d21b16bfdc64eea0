"""TRADES (Zhang et al., 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``.

The attack maximises the KL term from ``x + 0.001 N(0, 1)``; weights are uniform.
"""

from __future__ import annotations

import keras

from keras_mwat.methods.base import AdversarialTrainingModel
from keras_mwat.objectives import TRADESObjective


@keras.saving.register_keras_serializable(package="keras_mwat")
class TRADESModel(AdversarialTrainingModel):
    """TRADES adversarial training.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack; its loss is replaced by TRADES's KL and its start by
            ``x + 0.001 N(0, 1)``.
        beta: Weight of the KL (robustness) term; 6 in the paper.
        seed: Seed of the in-graph randomness.

    Example:
    ```python
    model = keras_mwat.TRADESModel(keras_mwat.zoo.small_cnn(), beta=6.0,
                                   attack=keras_mwat.attacks.PGD(eps=0.3, step_size=0.075))
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, beta: float = 6.0, seed=None, **kwargs):
        super().__init__(classifier, attack=attack, objective=TRADESObjective(beta), seed=seed,
                         **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), **self.objective.get_config()}
