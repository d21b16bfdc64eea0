"""Keras Tuner support: a search space over MWAT's (the paper's BiLAW's) hyperparameters.

``MWATHyperModel`` builds a compiled ``keras_mwat.MWATModel``, the paper's BiLAW with its
defaults, around a reference classifier from ``keras_mwat.zoo`` (``small_cnn`` for images,
``mlp`` otherwise), with the held-out meta set the method learns its weight network on
(``meta_data=``). The threat model (``eps``, ``norm``, attack steps, ``value_range``) is fixed
by the caller; the search covers the knobs of the paper's algorithm:

| name | values |
|---|---|
| ``learning_rate`` | β: the classifier's SGD (momentum 0.9) learning rate, also the pseudo step's; log-uniform in [0.01, 0.3], default 0.1 (the paper's) |
| ``meta_learning_rate`` | α: step size of the weight network's plain gradient step (``SGD(α)``); log-uniform in [0.03, 3], default 0.3 (the paper gives none) |
| ``weight_net_units`` | hidden units of the weight network: 64, 128 (the paper's) or 256 |

Trials are ranked by ``val_robust_accuracy`` (robust accuracy on the validation data under
the model's own PGD attack), to be maximised: see ``objective``. ``tune`` splits the meta
set off the training data and runs a random search.

Example:
```python
import keras_mwat as km
tuner = km.tuning.tune(km.data.load_embedded(), max_trials=3, epochs=1, eps=0.1,
                       directory="tuning")   # 500 of the 3,500 training digits: meta set
best_model = tuner.get_best_models(1)[0]
```
"""  # noqa: E501

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_mwat import validation
from keras_mwat._optional import require
from keras_mwat.attacks import PGD
from keras_mwat.data.holdout import holdout_split
from keras_mwat.methods.mwat import MWATModel
from keras_mwat.weight_net import WeightNetwork
from keras_mwat.zoo import mlp, small_cnn

keras_tuner = require("keras_tuner", "keras_mwat.tuning")  # the `tuning` extra
# keras-tuner imports tensorboard in every trial (TensorFlow backend) without declaring it.
require("tensorboard", "keras_mwat.tuning", extra="tuning")

__all__ = ["OBJECTIVE_NAME", "MWATHyperModel", "default_meta_size", "objective", "tune"]

OBJECTIVE_NAME = "val_robust_accuracy"
"""The metric every trial reports and the tuner maximises."""

#: Bounds of the search space, ``name -> (low, high)`` or the list of choices, and defaults.
LEARNING_RATE_RANGE, LEARNING_RATE_DEFAULT = (0.01, 0.3), 0.1
#: α of the weight network. The paper gives none; on the embedded MNIST data α in [0, 3]
#: trains and α >= 10 can diverge (bench/meta_lr_sweep.py, docs/method.md).
META_LEARNING_RATE_RANGE, META_LEARNING_RATE_DEFAULT = (0.03, 3.0), 0.3
WEIGHT_NET_UNITS, WEIGHT_NET_UNITS_DEFAULT = (64, 128, 256), 128
#: Momentum of the classifier's SGD (the paper's optimizer).
MOMENTUM = 0.9
#: The paper's meta set: 1,000 held-out training images (of MNIST's 60,000).
META_SIZE = 1000

#: Smallest height and width for which the convolutional classifier is used.
_MIN_IMAGE_SIZE = 8


def objective() -> keras_tuner.Objective:
    """The tuning objective: maximise ``val_robust_accuracy``.

    Returns:
        ``keras_tuner.Objective("val_robust_accuracy", "max")``.

    Example:
    ```python
    tuner = keras_tuner.RandomSearch(km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.1),
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


def _check_meta_data(meta_data):
    """None, a ``tf.data.Dataset`` or an ``(x, y)`` pair of arrays of equal length."""
    if meta_data is None or hasattr(meta_data, "element_spec"):
        return meta_data
    if not isinstance(meta_data, tuple | list) or len(meta_data) != 2:
        raise TypeError(
            "`meta_data` must be an (x, y) tuple of arrays, a tf.data.Dataset or None, got "
            f"{type(meta_data).__name__}.")
    x_meta, y_meta = np.asarray(meta_data[0], dtype="float32"), np.asarray(meta_data[1])
    if x_meta.ndim < 1 or len(x_meta) == 0 or len(x_meta) != len(y_meta):
        raise ValueError(
            "`meta_data` must hold at least one sample and as many labels as inputs, got "
            f"x of shape {x_meta.shape} and y of shape {y_meta.shape}.")
    return x_meta, y_meta


class MWATHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner search space of MWAT (BiLAW) models for a fixed threat model.

    ``build(hp)`` seeds Python, NumPy and TensorFlow with ``seed`` (so two builds with the
    same hyperparameter values start from identical weights), builds ``zoo.small_cnn`` for
    image inputs (rank 3, height and width >= 8) or ``zoo.mlp`` otherwise, wraps it in an
    eagerly built ``keras_mwat.MWATModel`` (the paper's defaults, with the trial's weight
    network width and step size α, and ``meta_data`` as its held-out meta set) with an
    ``eps``-PGD attack, and compiles it with SGD (momentum 0.9) at the trial's learning
    rate. The module docstring lists the hyperparameters and their ranges.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        num_classes: Number of classes (>= 2).
        eps: Radius of the training and validation PGD attack (> 0).
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Seed of the model building and of the in-graph randomness (>= 0).
        attack_steps: PGD steps (>= 1).
        step_size: PGD step size; None gives ``2.5 * eps / attack_steps`` (the paper's
            ``eps / 4`` for PGD-10).
        norm: ``"linf"`` or ``"l2"``.
        name: Name of the hypermodel and of the built models.
        classifier_width: Width of the classifier: ``small_cnn``'s ``width`` (default 32)
            or the size of ``mlp``'s two hidden layers (default 256); None for the defaults.
        meta_data: The held-out meta set every built model learns its weight network on:
            an ``(x, y)`` tuple of arrays (e.g. from ``km.data.holdout_split``) or a
            ``tf.data.Dataset``; not trained on. None builds models without one, which
            refuse to ``fit`` (``tune`` splits one off its data).

    Attributes:
        OBJECTIVE: ``keras_tuner.Objective("val_robust_accuracy", "max")``.

    Example:
    ```python
    import keras_tuner, keras_mwat as km
    data = km.data.load_embedded().with_holdout(meta=500, early_stopping=0, seed=0)
    hypermodel = km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.1, seed=0,
                                          meta_data=data.meta)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.OBJECTIVE,
                                     max_trials=5, seed=0, directory="tuning")
    tuner.search(*data.train, validation_data=data.validation, epochs=2,
                 callbacks=[km.callbacks.EpsilonWarmup(epochs=1)])
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
        meta_data=None,
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
        self.meta_data = _check_meta_data(meta_data)

    def __repr__(self) -> str:
        if self.meta_data is None:
            meta = "None"
        elif isinstance(self.meta_data, tuple):
            meta = f"<{len(self.meta_data[1])} samples>"
        else:
            meta = "<tf.data.Dataset>"
        return (
            f"MWATHyperModel(input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"eps={self.eps}, value_range={self.value_range}, seed={self.seed}, "
            f"attack_steps={self.attack_steps}, step_size={self.step_size}, "
            f"norm={self.norm!r}, name={self.name!r}, "
            f"classifier_width={self.classifier_width}, meta_data={meta})"
        )

    def with_meta_data(self, meta_data) -> MWATHyperModel:
        """A copy of this hypermodel with ``meta_data`` as the meta set of its models.

        Example:
        ```python
        hypermodel = km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.1)
        hypermodel = hypermodel.with_meta_data(data.meta)
        ```
        """
        other = copy.copy(self)
        # keras_tuner.HyperModel keeps methods bound to the instance (its build wrapper):
        # bind the copy's to the copy.
        for key, value in list(vars(other).items()):
            if getattr(value, "__self__", None) is self:
                setattr(other, key, value.__func__.__get__(other))
        other.meta_data = _check_meta_data(meta_data)
        return other

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
            A compiled, built ``keras_mwat.MWATModel`` with ``meta_data`` attached.

        Example:
        ```python
        model = km.tuning.MWATHyperModel((28, 28, 1), 10, eps=0.1, meta_data=meta).build(
            keras_tuner.HyperParameters())   # the default values
        ```
        """
        learning_rate = hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log",
                                 default=LEARNING_RATE_DEFAULT)
        meta_learning_rate = hp.Float("meta_learning_rate", *META_LEARNING_RATE_RANGE,
                                      sampling="log", default=META_LEARNING_RATE_DEFAULT)
        units = hp.Choice("weight_net_units", list(WEIGHT_NET_UNITS),
                          default=WEIGHT_NET_UNITS_DEFAULT)

        keras.utils.set_random_seed(self.seed)
        model = MWATModel(
            self.build_classifier(),
            attack=self.attack(),
            weight_net=WeightNetwork(hidden_units=(int(units),), name="weight_net"),
            meta_data=self.meta_data,
            seed=self.seed,
            name=self.name,
        )
        model.compile(optimizer=keras.optimizers.SGD(float(learning_rate), momentum=MOMENTUM),
                      meta_optimizer=keras.optimizers.SGD(float(meta_learning_rate)))
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


def default_meta_size(num_train: int) -> int:
    """The meta set ``tune`` holds out of ``num_train`` training samples by default.

    The paper's 1,000, but at most a seventh of the training set (the paper holds out
    1,000 of MNIST's 60,000 images; this gives 500 of the embedded 3,500).

    Example:
        >>> from keras_mwat.tuning import default_meta_size
        >>> default_meta_size(3500), default_meta_size(60000)
        (500, 1000)
    """
    return min(META_SIZE, validation.check_int(num_train, "num_train", minimum=0) // 7)


def tune(
    data,
    max_trials: int = 3,
    epochs: int = 1,
    directory: str | os.PathLike | None = None,
    project_name: str = "mwat",
    seed: int = 0,
    batch_size: int = 128,
    overwrite: bool = True,
    eps: float = 0.1,
    attack_steps: int = 10,
    classifier_width: int | None = None,
    hypermodel: MWATHyperModel | None = None,
    verbose: int = 0,
    meta_size: int | None = None,
    **search_kwargs: Any,
) -> keras_tuner.Tuner:
    """Runs a random search over MWAT's (the paper's BiLAW's) hyperparameters.

    MWAT learns its weight network on a held-out meta set. Unless ``data`` holds one already
    (``data.meta`` of ``data.with_holdout(...)``, non-empty) or ``hypermodel`` has its
    ``meta_data``, ``meta_size`` samples are split off ``(data.x_train, data.y_train)`` by
    ``km.data.holdout_split`` (stratified, with ``seed``). Each trial trains on the
    remaining training samples and is scored by its best ``val_robust_accuracy`` on
    ``(data.x_val, data.y_val)``. The meta set is the same for every trial.

    Args:
        data: An object with ``x_train``, ``y_train``, ``x_val`` and ``y_val`` arrays, such
            as ``keras_mwat.data.load_embedded``'s result. ``input_shape``,
            ``num_classes`` and ``value_range`` attributes are used when present (else
            inferred from the arrays, with range ``(0, 1)``); so are ``x_meta`` and
            ``y_meta`` (``with_holdout``) as the meta set when non-empty.
        max_trials: Number of hyperparameter combinations to try (>= 1).
        epochs: Training epochs per trial (>= 1).
        directory: Where Keras Tuner writes its trials; None uses a new temporary directory
            (see ``tuner.project_dir``).
        project_name: Sub-directory of ``directory`` for this search.
        seed: Seed of the random search, the meta-set split, the model building and the
            training.
        batch_size: Training and validation batch size (>= 1).
        overwrite: Start afresh instead of resuming a search in the same project.
        eps: Attack radius (default 0.1, the paper's for MNIST; ignored when
            ``hypermodel`` is given).
        attack_steps: PGD steps (ignored when ``hypermodel`` is given).
        classifier_width: See ``MWATHyperModel`` (ignored when ``hypermodel`` is given).
        hypermodel: A custom ``MWATHyperModel``; None builds one from ``data``.
        verbose: Verbosity of ``tuner.search``.
        meta_size: Training samples to hold out as the meta set (>= 1, fewer than the
            training samples); None for ``default_meta_size`` (the paper's 1,000, at most
            a seventh of the training set: 500 of the embedded 3,500). Unused when the meta
            set is given.
        **search_kwargs: Extra arguments of ``tuner.search`` (e.g. ``callbacks``).

    Returns:
        The ``keras_tuner.RandomSearch`` tuner after the search, e.g. for
        ``tuner.get_best_models(1)`` (trained ``MWATModel``s with the meta set attached) or
        ``tuner.get_best_hyperparameters(1)``.

    Raises:
        RuntimeError: If every trial failed (Keras Tuner only logs a failed trial).

    Example:
    ```python
    import keras_mwat as km
    tuner = km.tuning.tune(km.data.load_embedded(), max_trials=3, epochs=2, eps=0.1,
                           callbacks=[km.callbacks.EpsilonWarmup(epochs=1)])
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
    x_train = np.asarray(data.x_train, dtype="float32")
    y_train = np.asarray(data.y_train)
    if hypermodel.meta_data is None:
        given = getattr(data, "y_meta", None)
        if given is not None and len(given) > 0:
            meta = (data.x_meta, data.y_meta)
        else:
            if meta_size is None:
                meta_size = default_meta_size(len(y_train))
                if meta_size < 1:
                    raise ValueError(
                        f"{len(y_train)} training samples are too few to hold out a meta set "
                        "(at least 7 are needed); pass `meta_size` or a hypermodel with "
                        "`meta_data`.")
            meta_size = validation.check_int(meta_size, "meta_size", minimum=1)
            if meta_size >= len(y_train):
                raise ValueError(
                    f"`meta_size` must be smaller than the {len(y_train)} training samples, "
                    f"got meta_size={meta_size}.")
            (x_train, y_train), meta = holdout_split((x_train, y_train), sizes=(meta_size,),
                                                     seed=seed)
        hypermodel = hypermodel.with_meta_data(meta)
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
        x_train,
        y_train,
        validation_data=(np.asarray(data.x_val, dtype="float32"), np.asarray(data.y_val)),
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        **search_kwargs,
    )
    trials = list(tuner.oracle.trials.values())
    if trials and not any(t.status == "COMPLETED" for t in trials):
        # Keras Tuner logs a failed trial and goes on; a search without a score is an error.
        message = next((t.message for t in trials if t.message), "no message")
        raise RuntimeError(
            f"Every trial of the search failed ({len(trials)}); the first error:\n{message}")
    return tuner
