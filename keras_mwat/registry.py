"""The training methods by their command-line name, readable without importing TensorFlow.

A new method registers here with one line, ``"name": "module:Class"``; ``km.METHODS`` maps
the same names to the classes, and the ``keras-mwat`` command lists them in its help
without loading the library.

Example:
```python
from keras_mwat import registry
registry.method_names()          # ('gairat', 'mail', ..., 'wmmr')
registry.method_class("pgd_at")  # keras_mwat.methods.pgd_at.PGDATModel (imports it)
```
"""

from __future__ import annotations

import importlib

#: Command-line and ``compare`` name -> ``"module:Class"`` of the method.
METHOD_CLASSES = {
    "mwat": "keras_mwat.methods.mwat:MWATModel",
    "mwat_trades": "keras_mwat.methods.mwat_trades:MWATTRADESModel",
    "mwat_nonparametric": "keras_mwat.methods.mwat_nonparametric:MWATNonParametricModel",
    "pgd_at": "keras_mwat.methods.pgd_at:PGDATModel",
    "trades": "keras_mwat.methods.trades:TRADESModel",
    "mart": "keras_mwat.methods.mart:MARTModel",
    "mail": "keras_mwat.methods.mail:MAILModel",
    "gairat": "keras_mwat.methods.gairat:GAIRATModel",
    "wmmr": "keras_mwat.methods.wmmr:WMMRModel",
    "mwn": "keras_mwat.methods.mwn:MWNModel",
    "plain": "keras_mwat.methods.standard:StandardModel",
    "done": "keras_mwat.methods.done:DONEModel",
}


def method_names() -> tuple[str, ...]:
    """The registered method names, sorted."""
    return tuple(sorted(METHOD_CLASSES))


def method_class(name: str) -> type:
    """The class of method ``name`` (imports its module, and so TensorFlow).

    Raises:
        ValueError: ``name`` is not a registered method.
    """
    if name not in METHOD_CLASSES:
        raise ValueError(f"unknown method {name!r}; choose from {list(method_names())}")
    module, _, attribute = METHOD_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
