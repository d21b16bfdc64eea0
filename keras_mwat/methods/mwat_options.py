"""MWAT's options in three groups: the meta set, the weight network, the look-ahead step.

``MWATModel(classifier, weight_net=..., meta_set=km.MetaSet(...),
look_ahead=km.LookAhead(...))``, and the weight network's optimizer given to ``compile``
(``model.compile(optimizer=..., meta_optimizer=...)``), as Keras's own two-optimizer
examples do. The flat keyword names of earlier releases (``meta_source``,
``meta_objective``, ``meta_batch_size``, ``meta_fraction``, ``inner_lr``,
``meta_update_every``, ``hypergradient_mode``, ``meta_attack_model``, and
``meta_optimizer`` in the constructor) still work for one release, with a
``DeprecationWarning`` that names the new spelling (``FLAT_OPTIONS``).

Example:
```python
model = km.MWATModel(km.zoo.tiny_cnn(), meta_data=meta,
                     meta_set=km.MetaSet(batch_size=128, objective="adversarial"),
                     look_ahead=km.LookAhead(update_every=1))
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
              meta_optimizer=keras.optimizers.SGD(0.3))
```
"""

from __future__ import annotations

import warnings

import keras

from keras_mwat import validation
from keras_mwat.methods import bilevel

META_SOURCES = ("dataset", "batch", "split")
META_OBJECTIVES = ("adversarial", "clean", "both")
META_ATTACK_MODELS = ("pseudo", "current")


class _Options:
    """``from_config`` and ``__repr__`` of an options group, from its ``get_config``."""

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({fields})"


@keras.saving.register_keras_serializable(package="keras_mwat")
class MetaSet(_Options):
    """Where the meta batches come from and which loss the pseudo model is judged by.

    Args:
        source: "dataset" (the paper's: batches of the held-out ``meta_data``), "batch"
            (ours: the training batch itself and its adversarial examples) or "split"
            (ours: a held-out ``fraction`` of each batch).
        objective: Meta loss of the pseudo classifier: "adversarial" (the paper's: the
            unweighted CE of the meta batch's adversarial examples), "clean" or "both".
        batch_size: Meta batch size drawn from an ``(x, y)`` tuple ``meta_data`` (the
            global meta batch; the paper's 128).
        fraction: Held-out fraction of each batch with ``source="split"``, in (0, 1).

    Example:
    ```python
    km.MetaSet()                                  # the paper's: 128 held-out images a step
    km.MetaSet(source="batch", objective="clean")  # the training batch, clean CE
    ```
    """

    def __init__(self, source: str = "dataset", objective: str = "adversarial",
                 batch_size: int = 128, fraction: float = 0.5):
        self.source = validation.check_choice(source, "MetaSet.source", META_SOURCES)
        self.objective = validation.check_choice(objective, "MetaSet.objective",
                                                 META_OBJECTIVES)
        self.batch_size = validation.check_int(batch_size, "MetaSet.batch_size")
        self.fraction = validation.check_positive(fraction, "MetaSet.fraction")
        if self.fraction >= 1.0:
            raise ValueError(f"`MetaSet.fraction` must be in (0, 1), got {fraction!r}.")

    def get_config(self) -> dict:
        return {"source": self.source, "objective": self.objective,
                "batch_size": self.batch_size, "fraction": self.fraction}


@keras.saving.register_keras_serializable(package="keras_mwat")
class LookAhead(_Options):
    """The look-ahead (pseudo) step and how its hypergradient is computed.

    Args:
        step_size: Step size β of the pseudo step; None (the paper's) uses the classifier
            optimizer's current learning rate.
        update_every: Update the weight network every k-th step (1: the paper's).
        hypergradient_mode: "low_memory" (default), "reverse" or "forward": the same
            value computed three ways (docs/benchmarks.md).
        meta_attack_model: The classifier the meta batch is attacked against: "pseudo"
            (θ̃, the literal ``L_val(θ̃)``; default) or "current" (θ).

    Example:
    ```python
    km.LookAhead()                  # the paper's: β = the optimizer's lr, every step
    km.LookAhead(update_every=2)    # the cheaper variant of docs/benchmarks.md
    ```
    """

    def __init__(self, step_size: float | None = None, update_every: int = 1,
                 hypergradient_mode: str = "low_memory", meta_attack_model: str = "pseudo"):
        self.step_size = None if step_size is None else validation.check_positive(
            step_size, "LookAhead.step_size")
        self.update_every = validation.check_int(update_every, "LookAhead.update_every")
        self.hypergradient_mode = validation.check_choice(
            hypergradient_mode, "LookAhead.hypergradient_mode", bilevel.HYPERGRADIENT_MODES)
        self.meta_attack_model = validation.check_choice(
            meta_attack_model, "LookAhead.meta_attack_model", META_ATTACK_MODELS)

    def get_config(self) -> dict:
        return {"step_size": self.step_size, "update_every": self.update_every,
                "hypergradient_mode": self.hypergradient_mode,
                "meta_attack_model": self.meta_attack_model}


#: Earlier flat keyword -> (group, field) of its new spelling.
FLAT_OPTIONS = {
    "meta_source": ("meta_set", "source"),
    "meta_objective": ("meta_set", "objective"),
    "meta_batch_size": ("meta_set", "batch_size"),
    "meta_fraction": ("meta_set", "fraction"),
    "inner_lr": ("look_ahead", "step_size"),
    "meta_update_every": ("look_ahead", "update_every"),
    "hypergradient_mode": ("look_ahead", "hypergradient_mode"),
    "meta_attack_model": ("look_ahead", "meta_attack_model"),
}
_GROUPS = {"meta_set": MetaSet, "look_ahead": LookAhead}
_SPELLING = {"meta_set": "km.MetaSet", "look_ahead": "km.LookAhead"}


def group_flat_options(options: dict, defaults: dict | None = None, warn: bool = True,
                       owner: str = "MWATModel") -> dict:
    """``options`` with the flat keywords of ``FLAT_OPTIONS`` folded into ``meta_set`` and
    ``look_ahead`` objects (merged with any given); other keys unchanged.

    Args:
        options: Constructor keywords.
        defaults: Field defaults of the groups (e.g. MWN's ``{"meta_set": {"objective":
            "clean"}}``), used where neither a group nor a flat keyword sets the field.
        warn: Emit a ``DeprecationWarning`` naming the new spelling of each flat keyword
            (the command line's method specs fold them without one).
        owner: The class named in the warning.

    Returns:
        A new dict.
    """
    options = dict(options)
    fields = {group: dict((defaults or {}).get(group, {})) for group in _GROUPS}
    for group, klass in _GROUPS.items():
        given = options.get(group)
        if isinstance(given, dict):
            given = keras.saving.deserialize_keras_object(given)
        if given is not None and not isinstance(given, klass):
            raise TypeError(f"`{group}` must be a {_SPELLING[group]}, got {given!r}.")
        if given is not None:
            fields[group].update(given.get_config())
    for flat, (group, field) in FLAT_OPTIONS.items():
        if flat not in options:
            continue
        if warn:
            warnings.warn(
                f"{owner}({flat}=...) is deprecated and will be removed in the next release: "
                f"pass {group}={_SPELLING[group]}({field}=...).", DeprecationWarning,
                stacklevel=4)
        fields[group][field] = options.pop(flat)
    for group, klass in _GROUPS.items():
        options[group] = klass(**fields[group])
    return options
