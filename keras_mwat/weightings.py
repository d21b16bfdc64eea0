"""Weightings: how a method weights each sample's loss, as objects of their own.

A training method is an objective (``keras_mwat.objectives``) plus a **weighting**, run by
the shared step of ``keras_mwat.AdversarialTrainingModel``. Each step the model calls

1. ``weighting.update(step)``: only a weighting that learns does anything here (MWAT's
   weight network takes its meta step); the step calls it, not ``weights``;
2. ``weighting.weights(step)``: the per-sample weights before normalisation, shape (n,), or
   None for uniform weights. It has no side effect on training state, so that inspection
   (``inspect_weights``, ``WeightHistory``, the figures) can call it at any time.

The model then holds the weights constant (no gradient flows into them), makes them uniform
before ``reweight_start_epoch``, and normalises them over the global batch as
``normalization`` says: "mean" (mean 1), "sum" (sum 1; the same loss as "mean") or "none"
(used as they are: MAIL's and WMMR's weights scale the loss). The formulas themselves live
in ``keras_mwat.weighting``.

The ``step`` (``keras_mwat.methods.TrainingStep``) carries the batch (``x``, ``y``,
``x_adv``), the clean and adversarial logits, the per-sample losses, ``kappa`` (the attack's
trace, for a weighting with ``needs_attack_trace``) and ``model``.

Example, a user-defined weighting (weights grow with the sample's adversarial loss):
```python
@keras.saving.register_keras_serializable(package="my_package")
class LossPower(km.weightings.Weighting):
    def __init__(self, power=1.0):
        self.power = power

    def weights(self, step):
        return tf.pow(tf.stop_gradient(step.weighted_loss) + 1e-3, self.power)

    def get_config(self):
        return {"power": self.power}

model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(), weighting=LossPower(2.0))
```
"""

from __future__ import annotations

import keras

from keras_mwat import validation, weighting


class Weighting:
    """Base class of a weighting: override ``weights`` (and ``update`` if it learns).

    Class attributes a subclass may set: ``normalization`` ("mean", "sum" or "none") and
    ``needs_attack_trace`` (the step's ``kappa`` must be filled from the attack's trace).

    Example:
    ```python
    class Uniform(km.weightings.Weighting):
        def weights(self, step):
            return None
    ```
    """

    normalization = "mean"
    needs_attack_trace = False

    def weights(self, step):
        """Per-sample weights before normalisation, shape (n,), or None for uniform."""
        return None

    def update(self, step) -> None:
        """Learns from the step (a weighting that learns overrides it); called before
        ``weights`` by the training step, and only by it."""

    def check(self, model) -> None:
        """Raises if the weighting cannot work with ``model`` (called when it is attached)."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


class ModelBoundWeighting(Weighting):
    """Base of a weighting whose state (a weight network, a meta set, a meta optimizer)
    belongs to the model that creates it, as MWAT's does.

    Such a weighting is not a standalone part for ``AdversarialTrainingModel``: ``check``
    refuses any model that is not an instance of ``owner()``, naming the model to use.
    Subclasses define ``owner`` (a class method returning that model class, so that the
    model may be defined after the weighting, in the same module), ``update`` and
    ``weights``.

    Args:
        normalization: "sum" (default, the paper's), "mean" or "none".

    Example:
    ```python
    class MyLearnedWeighting(km.weightings.ModelBoundWeighting):
        @classmethod
        def owner(cls):
            return MyModel          # the model owning the weighting's state
    ```
    """

    def __init__(self, normalization: str = "sum"):
        self.normalization = validation.check_choice(
            normalization, "weight_normalization", weighting.NORMALIZATIONS)

    @classmethod
    def owner(cls) -> type:
        """The model class that owns this weighting's state."""
        raise NotImplementedError(f"{cls.__name__} must define owner()")

    def check(self, model) -> None:
        owner = self.owner()
        if not isinstance(model, owner):
            raise TypeError(
                f"{type(self).__name__} learns with state that km.{owner.__name__} owns (its "
                f"weight network or meta set and meta optimizer): train it as "
                f"km.{owner.__name__}(classifier, objective=..., meta_data=...), which takes "
                "any objective.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalization={self.normalization!r})"


@keras.saving.register_keras_serializable(package="keras_mwat")
class Uniform(Weighting):
    """Uniform weights: every sample counts the same (PGD-AT, TRADES, MART).

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(), weighting=km.weightings.Uniform())
    ```
    """


@keras.saving.register_keras_serializable(package="keras_mwat")
class MAILWeighting(Weighting):
    """MAIL's ``3 * sigmoid(slope * (p_2nd - p_y + bias))`` of the adversarial probabilities,
    not normalised (``keras_mwat.weighting.mail``).

    Args:
        bias: Margin offset of the sigmoid (reference default -1.5).
        slope: Slope of the sigmoid (reference default 1.0).

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        weighting=km.weightings.MAILWeighting(-0.5, 10.0))
    ```
    """

    normalization = "none"

    def __init__(self, bias: float = -1.5, slope: float = 1.0):
        self.bias = validation.check_finite(bias, "bias")
        self.slope = validation.check_finite(slope, "slope")

    def weights(self, step):
        return weighting.mail(step.y, step.logits_adv, bias=self.bias, slope=self.slope)

    def get_config(self) -> dict:
        return {"bias": self.bias, "slope": self.slope}


@keras.saving.register_keras_serializable(package="keras_mwat")
class GAIRATWeighting(Weighting):
    """GAIRAT's geometry-aware weights of κ, the attack steps a point stays correct
    (``keras_mwat.weighting.gairat``; K is the model's attack's ``num_steps``).

    Args:
        lam: The tanh offset λ (reference -1).

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        weighting=km.weightings.GAIRATWeighting(lam=-1.0))
    ```
    """

    needs_attack_trace = True

    def __init__(self, lam: float = -1.0):
        self.lam = validation.check_finite(lam, "lam")

    def check(self, model) -> None:
        if not model.attack.records_trace:
            raise TypeError(
                "GAIRAT counts the PGD steps during which each point stays correctly "
                "classified: `attack` must record a trace of its iterates (PGD, FGSM, CWPGD), "
                f"got {type(model.attack).__name__}.")

    def weights(self, step):
        return weighting.gairat(step.kappa, step.model.attack.num_steps, lam=self.lam)

    def get_config(self) -> dict:
        return {"lam": self.lam}


@keras.saving.register_keras_serializable(package="keras_mwat")
class WMMRWeighting(Weighting):
    """WMMR's ``exp(-alpha * m)`` of the adversarial margin, not normalised
    (``keras_mwat.weighting.wmmr``).

    Args:
        alpha: Sharpness of the exponential.

    Example:
    ```python
    model = km.AdversarialTrainingModel(km.zoo.tiny_cnn(),
                                        weighting=km.weightings.WMMRWeighting(alpha=0.1))
    ```
    """

    normalization = "mean"

    def __init__(self, alpha: float = 1.0):
        self.alpha = validation.check_finite(alpha, "alpha")

    def weights(self, step):
        return weighting.wmmr(step.y, step.logits_adv, alpha=self.alpha)

    def get_config(self) -> dict:
        return {"alpha": self.alpha}


def get(identifier) -> Weighting:
    """A ``Weighting`` from an instance, a serialized config, or None (uniform)."""
    if identifier is None:
        return Uniform()
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, Weighting):
        return identifier
    raise TypeError(f"`weighting` must be a keras_mwat.weightings.Weighting, got "
                    f"{identifier!r}.")
