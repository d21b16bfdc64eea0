"""Adversarial attacks: pure functions over a logits function, plus thin serialisable classes.

Attacks: ``PGD``, ``FGSM``, ``CWPGD``, ``APGD`` (APGD-CE, APGD-T), ``FAB`` (FAB, FAB-T),
``Square`` (black-box) and ``CleverhansAttack``.

Threat model: white-box (Square: black-box), L-infinity or L2 perturbations of radius
``eps`` per sample; inputs stay inside ``value_range`` (default ``(0.0, 1.0)``, images scaled to [0, 1]).

Example:

```python
import keras_mwat as km

attack = km.attacks.PGD(eps=8 / 255, step_size=2 / 255, num_steps=10, seed=0)
x_adv = attack(model, x, y)                     # standalone, NumPy or tensors
model_fn = lambda z: model(z, training=False)
x_adv = attack.perturb(model_fn, x, y, seed=None, loss_fn=None)   # graph-safe, tensors
x_adv, trace = attack.perturb_with_trace(model_fn, x, y)   # trace.correct_steps: kappa
x_adv = attack.scaled(0.5).perturb(model_fn, x, y)          # half the radius (warm-up)
x_adv = km.attacks.pgd(lambda z: model(z, training=False), x, y,
                       eps=8 / 255, step_size=2 / 255, num_steps=10)   # functional
```
"""

from __future__ import annotations

import keras

from keras_mwat.attacks.apgd import apgd
from keras_mwat.attacks.base import APGD, CWPGD, FGSM, PGD, Attack, AttackTrace
from keras_mwat.attacks.cleverhans import CleverhansAttack
from keras_mwat.attacks.fab import FAB, fab, hyperplane_projection
from keras_mwat.attacks.pgd import pgd
from keras_mwat.attacks.primitives import (
    ascent_direction,
    boundary_start,
    clip_to_range,
    normal_start,
    project,
    random_start,
)
from keras_mwat.attacks.square import Square, square

__all__ = [
    "APGD",
    "CWPGD",
    "FGSM",
    "PGD",
    "Attack",
    "AttackTrace",
    "CleverhansAttack",
    "FAB",
    "Square",
    "apgd",
    "ascent_direction",
    "boundary_start",
    "clip_to_range",
    "fab",
    "get",
    "hyperplane_projection",
    "normal_start",
    "pgd",
    "project",
    "random_start",
    "square",
]


def _attack_classes() -> dict:
    """Every ``Attack`` subclass defined so far, by class name."""
    classes, pending = {}, [Attack]
    while pending:
        cls = pending.pop()
        classes[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return classes


def get(identifier) -> Attack | None:
    """Returns an ``Attack`` from an instance (as is), a config dict, or None (None).

    The dict is either the output of ``keras.saving.serialize_keras_object(attack)`` or
    ``{"class_name": "PGD", "config": {...}}``.

    Example:

    ```python
    attack = get({"class_name": "PGD", "config": {"eps": 0.3, "step_size": 0.01}})
    assert get(attack) is attack
    ```
    """
    if identifier is None or isinstance(identifier, Attack):
        return identifier
    if isinstance(identifier, dict):
        attack = keras.saving.deserialize_keras_object(identifier, custom_objects=_attack_classes())
        if not isinstance(attack, Attack):
            raise TypeError(
                f"`identifier` does not describe a keras_mwat Attack, got {identifier!r}."
            )
        return attack
    raise TypeError(
        "`identifier` must be a keras_mwat.attacks.Attack or its config dict, got "
        f"{identifier!r} ({type(identifier).__name__})."
    )
