"""Every use of a Keras, TensorFlow or TFDS private internal, in one place.

keras-mwat runs on Keras 3 with the TensorFlow backend only. Where the public API does not
reach, the library leans on a few internals; each lives here, with the versions it was
checked on, so that a Keras / TensorFlow upgrade has one file to review (and
``pyproject.toml`` bounds the versions to those tested). Checked on keras 3.15.1,
tensorflow 2.21.0, tensorflow-datasets 4.9.10 (Python 3.11, CPU).
"""

from __future__ import annotations

import keras

#: The versions every shim below was checked on.
CHECKED_VERSIONS = {"keras": "3.15.1", "tensorflow": "2.21.0", "tensorflow-datasets": "4.9.10"}


def require_tensorflow_backend() -> None:
    """Raises ``ImportError`` unless Keras runs on the TensorFlow backend.

    The training steps, attacks and evaluation are written in TensorFlow (``tf.function``,
    ``tf.GradientTape``, ``tf.distribute``): another backend fails later with obscure
    errors. Call it before any of them is used (the package's import, the CLI).

    Raises:
        ImportError: ``keras.backend.backend()`` is not ``"tensorflow"``; the message names
            the backend and says how to switch.

    Example:
    ```python
    from keras_mwat import _compat
    _compat.require_tensorflow_backend()  # passes with KERAS_BACKEND=tensorflow
    ```
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ImportError(
            f"keras-mwat needs Keras's TensorFlow backend, but Keras runs on {backend!r}. "
            "Set the environment variable KERAS_BACKEND=tensorflow (or \"backend\": "
            "\"tensorflow\" in ~/.keras/keras.json) before importing keras."
        )


# ------------------------------------------------------------------ Keras models
def functional_model_class() -> type | tuple:
    """The class of ``keras.Model(inputs, outputs)`` models, or ``()`` if not found.

    Private: ``keras.src.models.functional.Functional`` (checked on keras 3.15.1); Keras
    has no public name for it. ``()`` makes ``isinstance(x, ())`` false.
    """
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - layout of other Keras 3 releases
        return ()
    return Functional


def flatten_layers(model: keras.layers.Layer) -> list:
    """``model`` and every layer nested in it, recursively.

    Private: ``Layer._flatten_layers(include_self=True, recursive=True)`` (checked on
    keras 3.15.1); the public ``Model.layers`` lists direct children only.
    """
    return list(model._flatten_layers(include_self=True, recursive=True))


def saved_seed_generator(seed: int | None, name: str) -> tuple:
    """A ``SeedGenerator`` whose state is a plain ``keras.Variable`` of the caller's.

    Keras does not save a ``SeedGenerator``'s state in ``.keras`` files or
    ``BackupAndRestore`` checkpoints; a model attribute holding the state variable is
    saved. The swap assigns the generator's ``state`` attribute, which Keras reads on each
    draw but treats as its own (checked on keras 3.15.1). The variable's aggregation is
    ``"only_first_replica"``: under tf.distribute every replica advances it identically.

    Returns:
        ``(generator, state_variable)``: track the variable on the model.
    """
    generator = keras.random.SeedGenerator(seed, name=name)
    state = keras.Variable(generator.state.value, dtype=generator.state.dtype,
                           trainable=False, name=f"{name}_state",
                           aggregation="only_first_replica")
    generator.state = state
    return generator, state


class SkipSymbolicBuildWhenBuilt:
    """Mixin for a ``keras.Model`` built eagerly (with its optimizer) before ``fit``.

    Overrides the private ``Trainer._maybe_symbolic_build`` hook (checked on keras 3.15.1):
    under a strategy Keras builds the model from the first batch reduced over replicas,
    and with ``MultiWorkerMirroredStrategy`` that reduction fails on an ``(x, y)`` batch
    ("Attempt to convert a value (PerReplica...)"). Nothing needs it once the model and
    its optimizer are built, so it is skipped then.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and getattr(self, "optimizer", None) is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def multi_worker_step_logs(logs: dict) -> dict:
    """Step logs in the shape Keras can reduce over workers.

    Keras 3 (checked on 3.15.1) reduces step logs over the workers of a
    ``MultiWorkerMirroredStrategy`` with ``reduce(MEAN, axis=0)``, which fails on scalars;
    shape (1,) reduces to the same scalar. Epoch logs are read from the metrics themselves.
    """
    import tensorflow as tf

    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


# ----------------------------------------------------------------------- TFDS
def tfds_data_dirs(data_dir: str | None) -> list[str] | None:
    """The data directories TFDS searches for ``data_dir`` (all registered ones for None).

    Private: ``tensorflow_datasets.core.utils.file_utils.list_data_dirs`` (checked on
    tensorflow-datasets 4.9.10). None when that function is not available.
    """
    import os

    try:
        from tensorflow_datasets.core.utils import file_utils

        return [os.fspath(d) for d in file_utils.list_data_dirs(given_data_dir=data_dir)]
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - tfds internals
        return None


def tfds_dataset_not_found_error() -> type:
    """The exception ``tfds.builder`` raises for an unknown dataset name.

    ``tensorflow_datasets.core.registered.DatasetNotFoundError`` (checked on
    tensorflow-datasets 4.9.10; it is also exported as ``tfds.core.DatasetNotFoundError``
    in some releases).
    """
    from tensorflow_datasets.core import registered

    return registered.DatasetNotFoundError
