"""keras-mwat: learned margin-based sample reweighting for adversarial training in Keras.

``import keras_mwat`` loads the library and registers its Keras classes, so that
``keras.saving.load_model`` reads a saved ``keras_mwat`` model. The optional parts load on
first use: ``keras_mwat.tuning`` (keras-tuner), ``keras_mwat.figures`` (matplotlib) and
``keras_mwat.experiments`` (the paper's tables). The ``keras-mwat`` command imports the
package lazily (``keras_mwat_cli``): ``keras-mwat --help`` does not load TensorFlow.

Example:
```python
import keras, keras_mwat as km
data = km.data.load_embedded().with_holdout(meta=500, early_stopping=0)
model = km.MWATModel(km.zoo.tiny_cnn(), meta_data=data.meta, seed=0,
                     attack=km.attacks.PGD(eps=0.1, step_size=0.025))
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
model.fit(data.train_dataset(), epochs=1)
model.evaluate(data.test_dataset(), return_dict=True)
```
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public names and the module that defines each.
_EXPORTS = {
    **dict.fromkeys(
        ("METHODS", "AdversarialTrainingModel", "GAIRATModel", "MAILModel", "MARTModel",
         "MWATModel", "MWATNonParametricModel", "MWATTRADESModel", "MWNModel", "PGDATModel",
         "StandardModel", "TRADESModel", "WMMRModel"),
        "keras_mwat.methods"),
    **dict.fromkeys(("GradientMaskingWarning", "RobustnessReport", "evaluate_robustness"),
                    "keras_mwat.evaluation"),
    "export_classifier": "keras_mwat.export",
    "WeightNetwork": "keras_mwat.weight_net",
    **dict.fromkeys(("MetaSet", "LookAhead"), "keras_mwat.methods.mwat_options"),
}
#: Subpackages and modules loaded by ``import keras_mwat``.
_CORE_MODULES = ("attacks", "callbacks", "data", "evaluation", "losses", "margins",
                 "objectives", "recipes", "training_mode", "validation", "weighting",
                 "weightings", "zoo")
#: Loaded on first use only: they need optional dependencies or are not the library's core.
_OPTIONAL_MODULES = ("tuning", "figures", "experiments", "cli")


def _registered_classes() -> dict[str, str]:
    """Class name -> module of every method in ``keras_mwat.registry`` (a method registered
    there is exported here without another line)."""
    from keras_mwat import registry

    return {path.partition(":")[2]: path.partition(":")[0]
            for path in registry.METHOD_CLASSES.values()}


_EXPORTS = {**_registered_classes(), **_EXPORTS}
__all__ = sorted([*_EXPORTS, *_CORE_MODULES, "tuning"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _CORE_MODULES or name in _OPTIONAL_MODULES:
        value = importlib.import_module(f"keras_mwat.{name}")
    else:
        raise AttributeError(f"module 'keras_mwat' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load() -> None:
    """Loads every core module (and so registers every Keras class of the library).

    ``import keras_mwat`` does it, except under ``KERAS_MWAT_LAZY_IMPORT=1`` (which the
    ``keras-mwat`` command sets while it parses its arguments).

    Example:
    ```python
    import keras_mwat
    keras_mwat.load()  # a no-op after a plain `import keras_mwat`
    ```
    """
    from keras_mwat import _compat

    _compat.require_tensorflow_backend()  # a clear error on a JAX or PyTorch Keras
    for name in (*_CORE_MODULES, *_EXPORTS):
        __getattr__(name)


if TYPE_CHECKING:  # for type checkers and IDEs: the names __getattr__ provides
    from keras_mwat import (  # noqa: F401
        attacks,
        callbacks,
        data,
        evaluation,
        losses,
        margins,
        objectives,
        recipes,
        training_mode,
        tuning,
        validation,
        weighting,
        weightings,
        zoo,
    )
    from keras_mwat.evaluation import (  # noqa: F401
        GradientMaskingWarning,
        RobustnessReport,
        evaluate_robustness,
    )
    from keras_mwat.export import export_classifier  # noqa: F401
    from keras_mwat.methods import (  # noqa: F401
        METHODS,
        AdversarialTrainingModel,
        GAIRATModel,
        MAILModel,
        MARTModel,
        MWATModel,
        MWATNonParametricModel,
        MWATTRADESModel,
        MWNModel,
        PGDATModel,
        StandardModel,
        TRADESModel,
        WMMRModel,
    )
    from keras_mwat.methods.done import DONEModel  # noqa: F401
    from keras_mwat.methods.mwat_options import LookAhead, MetaSet  # noqa: F401
    from keras_mwat.weight_net import WeightNetwork  # noqa: F401
elif os.environ.get("KERAS_MWAT_LAZY_IMPORT") != "1":
    load()
