"""Keras Tuner support: a search space over MWAT's hyperparameters.

``MWATHyperModel`` builds a compiled ``keras_mwat.MWATModel`` around a reference
classifier from ``keras_mwat.zoo`` (``small_cnn`` for images, ``mlp`` otherwise). The
threat model (``eps``, ``norm``, attack steps, ``value_range``) is fixed by the caller; the
search covers the method's eps-independent hyperparameters:

| name | values |
|---|---|
| ``learning_rate`` | classifier Adam learning rate, log-uniform in [1e-4, 3e-3] |
| ``separate_inner_lr`` | False: the virtual step uses the optimizer's learning rate |
| ``inner_lr`` | log-uniform in [1e-3, 1e-1]; active if ``separate_inner_lr`` |
| ``weight_net_units`` | hidden units of the weight network: 32, 100 or 200 |
| ``meta_learning_rate`` | weight-network Adam learning rate, log-uniform in [1e-4, 1e-2] |
| ``meta_objective`` | "adversarial", "clean" or "both" |
| ``reweight_start_epoch`` | 0, 1 or 2 (uniform weights before it) |

Trials are ranked by ``val_robust_accuracy`` (robust accuracy on the validation data under
the model's own PGD attack), to be maximised: see ``objective``.

Example:
```python
import keras_mwat as km
tuner = km.tuning.tune(km.data.load_embedded(), max_trials=3, epochs=1, eps=0.3,
                       directory="tuning")
best_model = tuner.get_best_models(1)[0]
```
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from keras_mwat import validation
from keras_mwat.attacks import PGD
from keras_mwat.methods.mwat import META_OBJECTIVES, MWATModel
from keras_mwat.weight_net import WeightNetwork
from keras_mwat.zoo import mlp, small_cnn

__all__ = ["OBJECTIVE_NAME", "MWATHyperModel", "objective", "tune"]

OBJECTIVE_NAME = "val_robust_accuracy"
"""The metric every trial reports and the tuner maximises."""

#: Bounds of the search space, ``name -> (low, high)`` or the list of choices.
LEARNING_RATE_RANGE = (1e-4, 3e-3)
INNER_LR_RANGE = (1e-3, 1e-1)
WEIGHT_NET_UNITS = (32, 100, 200)
META_LEARNING_RATE_RANGE = (1e-4, 1e-2)
REWEIGHT_START_EPOCH_RANGE = (0, 2)

#: Smallest height and width for which the convolutional classifier is used.
_MIN_IMAGE_SIZE = 8


def objective() -> keras_tuner.Objective:
    """The tuning objective: maximise ``val_robust_accuracy``.

    Returns:
        ``keras_tuner.Objective("val_robust_accuracy", "max")``.

    Example:
    ```python
    tuner = keras_tuner.RandomSearch(km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.3),
                                     objective=km.tuning.objective(), max_trials=5)
    ```
    """
    return keras_tuner.Objective(OBJECTIVE_NAME, direction="max")


def _check_input_shape(input_shape) -> tuple[int, ...]:
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence) or not input_shape:
        raise TypeError(
            "`input_shape` must be a non-empty tuple of positive ints without the batch axis, "
            f"got input_shape={input_shape!r}."
        )
    return tuple(validation.check_int(d, "input_shape", minimum=1) for d in input_shape)


def _is_image(input_shape: tuple[int, ...]) -> bool:
    return len(input_shape) == 3 and min(input_shape[:2]) >= _MIN_IMAGE_SIZE


class MWATHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner search space of MWAT models for a fixed threat model.

    ``build(hp)`` seeds Python, NumPy and TensorFlow with ``seed`` (so two builds with the
    same hyperparameter values start from identical weights), builds ``zoo.small_cnn`` for
    image inputs (rank 3, height and width >= 8) or ``zoo.mlp`` otherwise, wraps it in an
    eagerly built ``keras_mwat.MWATModel`` with an ``eps``-PGD attack and compiles it
    with Adam. The module docstring lists the hyperparameters and their ranges.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        num_classes: Number of classes (>= 2).
        eps: Radius of the training and validation PGD attack (> 0).
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Seed of the model building and of the in-graph randomness (>= 0).
        attack_steps: PGD steps (>= 1).
        step_size: PGD step size; None gives ``2.5 * eps / attack_steps``.
        norm: ``"linf"`` or ``"l2"``.
        name: Name of the hypermodel and of the built models.
        classifier_width: Width of the classifier: ``small_cnn``'s ``width`` (default 32)
            or the size of ``mlp``'s two hidden layers (default 256); None for the defaults.

    Attributes:
        OBJECTIVE: ``keras_tuner.Objective("val_robust_accuracy", "max")``.

    Example:
    ```python
    import keras_tuner, keras_mwat as km
    data = km.data.load_embedded()
    hypermodel = km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.3, seed=0)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.OBJECTIVE,
                                     max_trials=5, seed=0, directory="tuning")
    tuner.search(data.x_train, data.y_train, validation_data=data.validation, epochs=2)
    ```
    """

    OBJECTIVE = objective()

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        eps: float,
        value_range: tuple[float, float] | None = (0.0, 1.0),
        seed: int = 0,
        attack_steps: int = 10,
        step_size: float | None = None,
        norm: str = "linf",
        name: str = "mwat",
        classifier_width: int | None = None,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got name={name!r}.")
        super().__init__(name=name)
        self.input_shape = _check_input_shape(input_shape)
        self.num_classes = validation.check_int(num_classes, "num_classes", minimum=2)
        self.eps = validation.check_positive(eps, "eps")
        self.value_range = validation.check_value_range(value_range)
        self.seed = validation.check_int(seed, "seed", minimum=0)
        self.attack_steps = validation.check_int(attack_steps, "attack_steps", minimum=1)
        if step_size is None:
            step_size = 2.5 * self.eps / self.attack_steps
        self.step_size = validation.check_positive(step_size, "step_size")
        self.norm = validation.check_norm(norm)
        self.classifier_width = (
            None if classifier_width is None
            else validation.check_int(classifier_width, "classifier_width", minimum=1)
        )

    def __repr__(self) -> str:
        return (
            f"MWATHyperModel(input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"eps={self.eps}, value_range={self.value_range}, seed={self.seed}, "
            f"attack_steps={self.attack_steps}, step_size={self.step_size}, "
            f"norm={self.norm!r}, name={self.name!r}, "
            f"classifier_width={self.classifier_width})"
        )

    def build_classifier(self) -> keras.Model:
        """The (unseeded) logits classifier: ``small_cnn`` for images, else ``mlp``.

        Returns:
            A built functional ``keras.Model``.
        """
        if _is_image(self.input_shape):
            kwargs = {} if self.classifier_width is None else {"width": self.classifier_width}
            return small_cnn(self.input_shape, self.num_classes, name=f"{self.name}_classifier",
                             **kwargs)
        kwargs = ({} if self.classifier_width is None
                  else {"hidden_units": (self.classifier_width,) * 2})
        return mlp(self.input_shape, self.num_classes, name=f"{self.name}_classifier", **kwargs)

    def attack(self) -> PGD:
        """The PGD attack used for training and validation."""
        return PGD(eps=self.eps, step_size=self.step_size, num_steps=self.attack_steps,
                   norm=self.norm, random_start=True, value_range=self.value_range,
                   seed=self.seed)

    def build(self, hp: keras_tuner.HyperParameters) -> MWATModel:
        """Builds and compiles one MWAT model of the search space.

        Args:
            hp: The trial's ``keras_tuner.HyperParameters``; the hyperparameters of the
                module docstring are registered in it on first use.

        Returns:
            A compiled, built ``keras_mwat.MWATModel``.

        Example:
        ```python
        model = km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.3).build(
            keras_tuner.HyperParameters())   # the default values
        ```
        """
        learning_rate = hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log",
                                 default=1e-3)
        separate_inner_lr = hp.Boolean("separate_inner_lr", default=False)
        with hp.conditional_scope("separate_inner_lr", [True]):
            inner_lr = hp.Float("inner_lr", *INNER_LR_RANGE, sampling="log", default=1e-2)
        if not separate_inner_lr:
            inner_lr = None
        units = hp.Choice("weight_net_units", list(WEIGHT_NET_UNITS), default=100)
        meta_learning_rate = hp.Float("meta_learning_rate", *META_LEARNING_RATE_RANGE,
                                      sampling="log", default=1e-3)
        meta_objective = hp.Choice("meta_objective", list(META_OBJECTIVES),
                                   default="adversarial")
        reweight_start_epoch = hp.Int("reweight_start_epoch", *REWEIGHT_START_EPOCH_RANGE,
                                      default=0)

        keras.utils.set_random_seed(self.seed)
        model = MWATModel(
            self.build_classifier(),
            attack=self.attack(),
            weight_net=WeightNetwork(hidden_units=(int(units),), name="weight_net"),
            meta_objective=meta_objective,
            inner_lr=None if inner_lr is None else float(inner_lr),
            meta_optimizer=keras.optimizers.Adam(float(meta_learning_rate)),
            reweight_start_epoch=int(reweight_start_epoch),
            seed=self.seed,
            name=self.name,
        )
        model.compile(optimizer=keras.optimizers.Adam(float(learning_rate)))
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: MWATModel, *args, **kwargs):
        """Trains ``model`` with ``model.fit(*args, **kwargs)`` (no tuned fit arguments).

        Args:
            hp: The trial's hyperparameters (unused).
            model: The model returned by ``build``.
            *args: Passed to ``model.fit``.
            **kwargs: Passed to ``model.fit``; the tuner adds its callbacks.

        Returns:
            The ``keras.callbacks.History`` of ``model.fit``.
        """
        return model.fit(*args, **kwargs)


def _data_spec(data) -> tuple[tuple[int, ...], int, tuple[float, float] | None]:
    """(input_shape, num_classes, value_range) of an EmbeddedData-like object."""
    for attr in ("x_train", "y_train", "x_val", "y_val"):
        if not hasattr(data, attr):
            raise TypeError(
                f"`data` must have x_train, y_train, x_val and y_val (like "
                f"keras_mwat.data.EmbeddedData), got {type(data).__name__} without `{attr}`."
            )
    input_shape = tuple(getattr(data, "input_shape", None) or np.shape(data.x_train)[1:])
    num_classes = getattr(data, "num_classes", None)
    if num_classes is None:
        labels = validation.check_labels(data.y_train, name="data.y_train")
        num_classes = max(int(labels.max()) + 1, 2) if labels.size else 2
    value_range = getattr(data, "value_range", (0.0, 1.0))
    return input_shape, int(num_classes), value_range


def tune(
    data,
    max_trials: int = 3,
    epochs: int = 1,
    directory: str | os.PathLike | None = None,
    project_name: str = "mwat",
    seed: int = 0,
    batch_size: int = 128,
    overwrite: bool = True,
    eps: float = 0.3,
    attack_steps: int = 10,
    classifier_width: int | None = None,
    hypermodel: MWATHyperModel | None = None,
    verbose: int = 0,
    **search_kwargs: Any,
) -> keras_tuner.Tuner:
    """Runs a random search over MWAT's hyperparameters and returns the tuner.

    Each trial trains on ``(data.x_train, data.y_train)`` and is scored by its best
    ``val_robust_accuracy`` on ``(data.x_val, data.y_val)``.

    Args:
        data: An object with ``x_train``, ``y_train``, ``x_val`` and ``y_val`` arrays, such
            as ``keras_mwat.data.load_embedded``'s result. ``input_shape``,
            ``num_classes`` and ``value_range`` attributes are used when present (else
            inferred from the arrays, with range ``(0, 1)``).
        max_trials: Number of hyperparameter combinations to try (>= 1).
        epochs: Training epochs per trial (>= 1).
        directory: Where Keras Tuner writes its trials; None uses a new temporary directory
            (see ``tuner.project_dir``).
        project_name: Sub-directory of ``directory`` for this search.
        seed: Seed of the random search, the model building and the training.
        batch_size: Training and validation batch size (>= 1).
        overwrite: Start afresh instead of resuming a search in the same project.
        eps: Attack radius (ignored when ``hypermodel`` is given).
        attack_steps: PGD steps (ignored when ``hypermodel`` is given).
        classifier_width: See ``MWATHyperModel`` (ignored when ``hypermodel`` is given).
        hypermodel: A custom ``MWATHyperModel``; None builds one from ``data``.
        verbose: Verbosity of ``tuner.search``.
        **search_kwargs: Extra arguments of ``tuner.search`` (e.g. ``callbacks``).

    Returns:
        The ``keras_tuner.RandomSearch`` tuner after the search, e.g. for
        ``tuner.get_best_models(1)`` or ``tuner.get_best_hyperparameters(1)``.

    Example:
    ```python
    import keras_mwat as km
    tuner = km.tuning.tune(km.data.load_embedded(), max_trials=3, epochs=1, eps=0.3)
    best_hp = tuner.get_best_hyperparameters(1)[0].values
    score = tuner.oracle.get_best_trials(1)[0].score   # val_robust_accuracy
    ```
    """
    max_trials = validation.check_int(max_trials, "max_trials", minimum=1)
    epochs = validation.check_int(epochs, "epochs", minimum=1)
    seed = validation.check_int(seed, "seed", minimum=0)
    batch_size = validation.check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(project_name, str) or not project_name:
        raise ValueError(
            f"`project_name` must be a non-empty string, got project_name={project_name!r}."
        )
    input_shape, num_classes, value_range = _data_spec(data)
    if hypermodel is None:
        hypermodel = MWATHyperModel(input_shape, num_classes, eps=eps, value_range=value_range,
                                    seed=seed, attack_steps=attack_steps,
                                    classifier_width=classifier_width)
    elif not isinstance(hypermodel, MWATHyperModel):
        raise TypeError(
            f"`hypermodel` must be a keras_mwat.tuning.MWATHyperModel, got "
            f"{type(hypermodel).__name__}."
        )
    if directory is None:
        directory = tempfile.mkdtemp(prefix="keras_mwat_tuning_")
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective=objective(),
        max_trials=max_trials,
        seed=seed,
        directory=os.fspath(directory),
        project_name=project_name,
        overwrite=bool(overwrite),
    )
    keras.utils.set_random_seed(seed)
    tuner.search(
        np.asarray(data.x_train, dtype="float32"),
        np.asarray(data.y_train),
        validation_data=(np.asarray(data.x_val, dtype="float32"), np.asarray(data.y_val)),
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        **search_kwargs,
    )
    return tuner
