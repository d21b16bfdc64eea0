"""MAIL (Wang et al., 2021): probabilistic-margin-aware instance reweighting.

Weights ``3 * sigmoid(slope * (p_2nd - p_y + bias))`` from the adversarial probabilities,
detached and not normalised, on PGD-AT's cross-entropy (``base="at"``) or on TRADES's KL
term (``base="trades"``). The reference warms up unweighted for 75 of 120 epochs
(``reweight_start_epoch``).
"""

from __future__ import annotations

import keras

from keras_mwat import objectives, validation, weightings
from keras_mwat.methods.base import AdversarialTrainingModel


@keras.saving.register_keras_serializable(package="keras_mwat")
class MAILModel(AdversarialTrainingModel):
    """MAIL-AT / MAIL-TRADES.

    Args:
        classifier: A built Keras model mapping inputs to logits.
        attack: The training attack.
        base: "at" (weighted CE on x_adv) or "trades" (weighted KL term).
        beta: TRADES's KL weight (``base="trades"`` only).
        bias: Margin offset of the sigmoid (reference default -1.5).
        slope: Slope of the sigmoid (reference default 1.0).
        reweight_start_epoch: Uniform weights before this epoch (counted from 0).
        seed: Seed of the in-graph randomness.

    Example:
    ```python
    model = keras_mwat.MAILModel(keras_mwat.zoo.small_cnn(), base="at", bias=-0.5, slope=10.0)
    model.compile(optimizer="adam")
    model.fit(x_train, y_train, epochs=1)
    ```
    """

    preset = True

    def __init__(self, classifier, attack=None, base: str = "at", beta: float = 6.0,
                 bias: float = -1.5, slope: float = 1.0, reweight_start_epoch: int = 0,
                 seed=None, **kwargs):
        base = validation.check_choice(base, "base", objectives.BASES)
        super().__init__(classifier, attack=attack,
                         objective=objectives.from_base(base, beta),
                         weighting=weightings.MAILWeighting(bias=bias, slope=slope),
                         reweight_start_epoch=reweight_start_epoch, seed=seed, **kwargs)
        self.base = base
        self.beta = validation.check_nonnegative(beta, "beta")
        self.bias, self.slope = self.weighting.bias, self.weighting.slope

    def get_config(self) -> dict:
        return {**super().get_config(), "base": self.base, "beta": self.beta,
                "bias": self.bias, "slope": self.slope}
