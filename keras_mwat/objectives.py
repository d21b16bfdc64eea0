"""Objectives: what the training attack maximises and the per-sample loss terms it trains on.

A training method is an **objective** (this module: PGD-AT's cross-entropy, TRADES, MART)
plus a **weighting** (``keras_mwat.weightings``: uniform, a heuristic, or learned), run by
the one shared step of ``keras_mwat.AdversarialTrainingModel``. An objective names its
per-sample loss terms and marks each as *weighted* (the method's sample weights multiply
it) or not (it is averaged uniformly, e.g. TRADES's clean cross-entropy); the step sums
the weighted terms into the loss the weights multiply and the others into the loss they do
not. ``fit``'s ``sample_weight`` multiplies every term.

Example:
```python
import keras_mwat as km
objective = km.objectives.TRADESObjective(beta=6.0)
model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(), objective=objective,
                                    weighting=km.weightings.MAILWeighting(bias=0.0, slope=2.0))
[term.name for term in objective.loss_terms(model, step)]  # in a step: ["robust_kl", "natural_ce"]
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from keras_mwat import losses, validation

#: The ``base`` names of the methods that take one (MAIL, MWAT): "at" or "trades".
BASES = ("at", "trades")


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One named per-sample loss term of an objective.

    Attributes:
        name: What the term is, e.g. "adversarial_ce".
        values: Per-sample losses, shape (n,).
        weighted: Whether the method's sample weights multiply the term.
    """

    name: str
    values: Any
    weighted: bool = True


class Objective:
    """Base class of an objective: subclass it and implement ``loss_terms``.

    Class attributes a subclass may set:

    * ``needs_natural_logits``: the loss terms use training-mode logits on the clean inputs
      (``step.logits_natural``);
    * ``attack_init``: the training attack's random start (None: the attack's own; "normal":
      TRADES's ``x + 0.001 N(0, 1)``).

    Example:
    ```python
    @keras.saving.register_keras_serializable(package="my_package")
    class LogitPairing(km.objectives.Objective):
        needs_natural_logits = True

        def loss_terms(self, model, step):
            pairing = tf.reduce_sum(tf.square(step.logits_adv - step.logits_natural), -1)
            return [km.objectives.LossTerm("adversarial_ce",
                                           model.base_loss(step.y, step.logits_adv)),
                    km.objectives.LossTerm("pairing", 0.1 * pairing, weighted=False)]
    ```
    """

    name = "objective"
    needs_natural_logits = False
    attack_init = None

    def attack_loss(self, x, y, logits_clean):
        """The per-sample function ``loss(y, logits)`` the attack maximises; None: the
        attack's own cross-entropy."""
        return None

    def loss_terms(self, model, step) -> list[LossTerm]:
        """The per-sample loss terms of a step (``keras_mwat.methods.TrainingStep``).

        Args:
            model: The ``AdversarialTrainingModel`` (its ``base_loss`` is ``compile``'s
                per-sample loss).
            step: The step: ``y``, ``logits_adv`` and, with ``needs_natural_logits``,
                ``logits_natural`` are set.

        Returns:
            A non-empty list of ``LossTerm``, at least one of them weighted.
        """
        raise NotImplementedError

    def sample_losses(self, model, step):
        """``(weighted, unweighted or None)``: the sums of the weighted and of the other
        terms, each of shape (n,)."""
        terms = self.loss_terms(model, step)
        weighted = [term.values for term in terms if term.weighted]
        unweighted = [term.values for term in terms if not term.weighted]
        if not weighted:
            raise ValueError(f"objective {type(self).__name__} has no weighted loss term.")
        return (weighted[0] if len(weighted) == 1 else sum(weighted[1:], weighted[0]),
                None if not unweighted else
                unweighted[0] if len(unweighted) == 1 else sum(unweighted[1:], unweighted[0]))

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_mwat")
class CrossEntropyObjective(Objective):
    """PGD-AT: the attack maximises CE; one weighted term ``CE(f(x_adv), y)``.

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        objective=km.objectives.CrossEntropyObjective())
    ```
    """

    name = "at"

    def loss_terms(self, model, step) -> list[LossTerm]:
        return [LossTerm("adversarial_ce", model.base_loss(step.y, step.logits_adv))]


@keras.saving.register_keras_serializable(package="keras_mwat")
class TRADESObjective(Objective):
    """TRADES: the attack maximises ``KL(f(x) || f(x_adv))`` from ``x + 0.001 N(0, 1)``.

    Terms: ``robust_kl = beta * KL(f(x) || f(x_adv))`` (weighted, as MAIL-TRADES and
    BiLAW-TRADES weight it) and ``natural_ce = CE(f(x), y)`` (not weighted). The attack's
    clean logits are computed once per step, in inference mode.

    Args:
        beta: Weight of the KL term (TRADES's 1/λ; 6 in the paper).

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        objective=km.objectives.TRADESObjective(beta=6.0))
    ```
    """

    name = "trades"
    needs_natural_logits = True
    attack_init = "normal"

    def __init__(self, beta: float = 6.0):
        self.beta = validation.check_nonnegative(beta, "beta")

    def attack_loss(self, x, y, logits_clean):
        return lambda labels, logits: losses.kl(logits_clean, logits)

    def loss_terms(self, model, step) -> list[LossTerm]:
        return [LossTerm("robust_kl", self.beta * losses.kl(step.logits_natural,
                                                            step.logits_adv)),
                LossTerm("natural_ce", losses.cross_entropy(step.y, step.logits_natural),
                         weighted=False)]

    def get_config(self) -> dict:
        return {"beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_mwat")
class MARTObjective(Objective):
    """MART: boosted CE on x_adv plus ``beta * KL(p_nat || p_adv) * (1 - p_nat[y])``, one
    weighted term; the attack maximises CE.

    Args:
        beta: Weight of the misclassification-aware KL term (5 or 6).

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        objective=km.objectives.MARTObjective(beta=6.0))
    ```
    """

    name = "mart"
    needs_natural_logits = True

    def __init__(self, beta: float = 6.0):
        self.beta = validation.check_nonnegative(beta, "beta")

    def loss_terms(self, model, step) -> list[LossTerm]:
        return [LossTerm("mart", losses.mart(step.y, step.logits_natural, step.logits_adv,
                                             beta=self.beta))]

    def get_config(self) -> dict:
        return {"beta": self.beta}


def from_base(base: str, beta: float = 6.0) -> Objective:
    """The objective of ``base``: "at" (``CrossEntropyObjective``) or "trades"
    (``TRADESObjective(beta)``)."""
    validation.check_choice(base, "base", BASES)
    return CrossEntropyObjective() if base == "at" else TRADESObjective(beta)


def get(identifier) -> Objective:
    """An ``Objective`` from an instance, a serialized config, or a base name ("at",
    "trades", "mart")."""
    if isinstance(identifier, Objective):
        return identifier
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
        if isinstance(identifier, Objective):
            return identifier
    if identifier == "mart":
        return MARTObjective()
    if isinstance(identifier, str) and identifier in BASES:
        return from_base(identifier)
    raise TypeError(f"`objective` must be a keras_mwat.objectives.Objective or one of "
                    f"{[*BASES, 'mart']}, got {identifier!r}.")
