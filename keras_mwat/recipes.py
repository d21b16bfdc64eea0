"""The paper's training protocol as named recipes, usable by every method.

A ``Recipe`` holds the settings of a training run (optimizer, learning-rate schedule,
epochs, batch sizes, training and evaluation attacks, augmentation) and builds the objects
that carry them out: ``recipe.optimizer(steps_per_epoch)``, ``recipe.attack(eps)``,
``recipe.eval_attack(eps)`` and ``recipe.prepare(dataset)``. Nothing here is specific to
MWAT: the same recipe trains ``PGDATModel``, ``TRADESModel``, ``MWATModel`` and the rest.

Named recipes (``get(name)``):

- ``"paper"``: the protocol of Holtz, Weng & Mishne (2022), "Training protocol", as used
  for MNIST and Fashion-MNIST: SGD, lr 0.1 divided by 10 at epochs 30 and 60, 100 epochs,
  batch 128 (training and meta), inputs in [0, 1], PGD-10 with step eps/4 in training,
  PGD-20 with step eps/4 in evaluation, no augmentation.
- ``"paper-cifar"``: the same plus random crop (zero padding 4) and horizontal flip.

Stated by the paper [PAPER]: the lr schedule, epochs, batch sizes, attack steps and step
fraction, the augmentation of CIFAR. Ours [GAP], where the paper is silent: momentum 0.9
(the paper says momentum only for CIFAR, without a value), weight decay 5e-4, PyTorch's
form of SGD (see ``TorchSGD``), random starts in both attacks, zero padding.

Example:

```python
import keras_mwat as km

recipe = km.recipes.get("paper").scaled(epochs=10)   # lr drops at epochs 3 and 6
data = km.data.load_embedded()
train = data.train_dataset(batch_size=recipe.batch_size)
model = km.PGDATModel(km.zoo.small_cnn(), attack=recipe.attack(0.1), seed=0)
model.compile(optimizer=recipe.optimizer(steps_per_epoch=len(train)))
model.fit(recipe.prepare(train), epochs=recipe.epochs)
```
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_mwat import attacks, validation

__all__ = [
    "AUGMENTATIONS",
    "PADDING_MODES",
    "RECIPES",
    "SGD_FORMS",
    "Recipe",
    "TorchSGD",
    "crop_flip",
    "get",
]

AUGMENTATIONS = ("none", "crop_flip")
SGD_FORMS = ("pytorch", "keras")
PADDING_MODES = ("constant", "reflect")


@keras.saving.register_keras_serializable(package="keras_mwat")
class TorchSGD(keras.optimizers.SGD):
    """SGD with PyTorch's update rule (``torch.optim.SGD``, dampening 0).

    Per variable ``theta`` with gradient ``g``, learning rate ``lr``, momentum ``mu`` and
    weight decay ``wd``::

        g   <- g + wd * theta                  # L2 weight decay, added to the gradient
        buf <- mu * buf + g                    # buffer of gradients (zero at the start)
        theta <- theta - lr * buf              # nesterov: theta - lr * (g + mu * buf)

    It differs from ``keras.optimizers.SGD(weight_decay=wd)`` in two ways.

    1. **Weight decay.** Keras's decay is decoupled: before the gradient step it applies
       ``theta <- theta - theta * wd * lr`` (``_apply_weight_decay`` in Keras 3.15's
       ``base_optimizer.py``; the decay does not enter the momentum). PyTorch adds
       ``wd * theta`` to the gradient, so the decay goes through the momentum buffer. For
       plain SGD (``mu = 0``) both give ``theta <- theta * (1 - lr * wd) - lr * g``, exactly.
       With momentum they differ: the decay enters the buffer, so (to first order in
       ``lr * wd``, once the buffer has filled) it shrinks the weights by a factor
       ``1 - lr * wd / (1 - mu)`` per step against Keras's ``1 - lr * wd``: ten times
       stronger at ``mu = 0.9``. PyTorch's ``wd = 5e-4`` is roughly Keras's
       ``weight_decay = 5e-3``, not ``5e-4``.
    2. **Momentum.** Keras's velocity accumulates ``lr * g``; PyTorch's buffer accumulates
       ``g`` and multiplies by the current ``lr`` at each step. With a constant learning
       rate the two are the same; after a learning-rate drop PyTorch's whole buffer is
       applied at the new rate at once, while Keras's velocity still carries the old one.

    Weight decay applies to every trainable variable (biases and BatchNorm scales too), as
    ``torch.optim.SGD(model.parameters(), weight_decay=wd)`` does.

    Args:
        learning_rate: A float or a ``keras.optimizers.schedules.LearningRateSchedule``.
        momentum: ``mu`` in [0, 1].
        nesterov: Nesterov momentum.
        weight_decay: ``wd`` >= 0, the L2 coefficient (PyTorch's meaning), or None for 0.
        **kwargs: Other ``keras.optimizers.Optimizer`` arguments (``name``, ``clipnorm``...).

    Example:

    ```python
    optimizer = TorchSGD(0.1, momentum=0.9, weight_decay=5e-4)
    model.compile(optimizer=optimizer)
    ```
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        **kwargs,
    ):
        momentum = validation.check_nonnegative(momentum, "momentum")
        if momentum > 1:
            raise ValueError(f"`momentum` must be in [0, 1], got momentum={momentum!r}.")
        l2 = 0.0 if weight_decay is None else validation.check_nonnegative(
            weight_decay, "weight_decay")
        # Keras's own (decoupled) decay stays off: the L2 term enters ``update_step``.
        super().__init__(learning_rate=learning_rate, momentum=momentum,
                         nesterov=bool(nesterov), weight_decay=None, **kwargs)
        self.l2_weight_decay = l2

    def update_step(self, gradient, variable, learning_rate):
        """One PyTorch SGD step on ``variable`` (see the class docstring)."""
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            wd = keras.ops.cast(self.l2_weight_decay, variable.dtype)
            gradient = keras.ops.add(gradient, keras.ops.multiply(variable, wd))
        if self.momentum != 0:
            buf = self.momentums[self._get_variable_index(variable)]
            mu = keras.ops.cast(self.momentum, variable.dtype)
            self.assign(buf, keras.ops.add(keras.ops.multiply(buf, mu), gradient))
            if self.nesterov:
                gradient = keras.ops.add(gradient, keras.ops.multiply(buf, mu))
            else:
                gradient = buf
        self.assign_sub(variable, keras.ops.multiply(gradient, learning_rate))

    def get_config(self) -> dict:
        """Constructor arguments; ``weight_decay`` is the L2 coefficient."""
        config = super().get_config()
        config["weight_decay"] = self.l2_weight_decay
        return config


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {name}={value!r}.")
    return value


def _check_drop_epochs(value) -> tuple[int, ...]:
    try:
        epochs = tuple(value)
    except TypeError:
        raise TypeError(
            f"`lr_drop_epochs` must be a sequence of epochs, got lr_drop_epochs={value!r}."
        ) from None
    for epoch in epochs:
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise ValueError(
                f"`lr_drop_epochs` must hold integers >= 1, got lr_drop_epochs={value!r}."
            )
    if list(epochs) != sorted(epochs):
        raise ValueError(
            f"`lr_drop_epochs` must be non-decreasing, got lr_drop_epochs={value!r}."
        )
    return tuple(int(epoch) for epoch in epochs)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The settings of a training run, and the objects that carry them out.

    Epochs count from 0, as in Keras: with ``lr_drop_epochs=(30, 60)`` epochs 0-29 train
    at ``learning_rate``, epochs 30-59 at ``learning_rate * lr_drop_factor``, and the rest at
    ``learning_rate * lr_drop_factor ** 2`` (PyTorch's ``MultiStepLR(milestones=[30, 60])``
    stepped once per epoch). A repeated drop epoch divides twice.

    Args:
        name: A label (``"paper"``, ``"paper-cifar"``, or yours).
        epochs: Training epochs.
        batch_size: Training batch size.
        meta_batch_size: Meta batch size of the bilevel methods (``MWATModel``'s
            ``meta_batch_size``).
        learning_rate: Initial learning rate of SGD.
        lr_drop_epochs: Epochs at whose start the learning rate is multiplied by
            ``lr_drop_factor`` (non-decreasing integers >= 1; may be empty).
        lr_drop_factor: Multiplier of each drop, in (0, 1].
        momentum: SGD momentum in [0, 1].
        weight_decay: Weight decay >= 0, in the sense of ``sgd_form``.
        sgd_form: ``"pytorch"`` (``TorchSGD``: L2 decay added to the gradient, a momentum
            buffer of gradients) or ``"keras"`` (``keras.optimizers.SGD`` with its decoupled
            ``weight_decay``).
        nesterov: Nesterov momentum.
        attack_steps: PGD steps of the training attack.
        eval_attack_steps: PGD steps of the evaluation attack.
        attack_step_fraction: PGD step size as a fraction of ``eps`` (both attacks).
        eval_random_start: Random start of the evaluation attack.
        augment: ``"none"`` or ``"crop_flip"`` (random crop of the zero-padded image, then a
            random horizontal flip: CIFAR's augmentation).
        crop_padding: Pixels of padding on each side before the crop.
        padding_mode: ``"constant"`` (zeros) or ``"reflect"``.

    Example:

    ```python
    recipe = Recipe("short", epochs=10, lr_drop_epochs=(5,), weight_decay=0.0)
    optimizer = recipe.optimizer(steps_per_epoch=100)
    attack = recipe.attack(eps=8 / 255)          # PGD-10, step 2/255, random start
    ```
    """

    name: str
    epochs: int = 100
    batch_size: int = 128
    meta_batch_size: int = 128
    learning_rate: float = 0.1
    lr_drop_epochs: tuple[int, ...] = (30, 60)
    lr_drop_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sgd_form: str = "pytorch"
    nesterov: bool = False
    attack_steps: int = 10
    eval_attack_steps: int = 20
    attack_step_fraction: float = 0.25
    eval_random_start: bool = True
    augment: str = "none"
    crop_padding: int = 4
    padding_mode: str = "constant"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"`name` must be a non-empty string, got name={self.name!r}.")
        checked = {
            "epochs": validation.check_int(self.epochs, "epochs"),
            "batch_size": validation.check_int(self.batch_size, "batch_size"),
            "meta_batch_size": validation.check_int(self.meta_batch_size, "meta_batch_size"),
            "learning_rate": validation.check_positive(self.learning_rate, "learning_rate"),
            "lr_drop_epochs": _check_drop_epochs(self.lr_drop_epochs),
            "lr_drop_factor": validation.check_positive(self.lr_drop_factor, "lr_drop_factor"),
            "momentum": validation.check_nonnegative(self.momentum, "momentum"),
            "weight_decay": validation.check_nonnegative(self.weight_decay, "weight_decay"),
            "sgd_form": validation.check_choice(self.sgd_form, "sgd_form", SGD_FORMS),
            "nesterov": _check_bool(self.nesterov, "nesterov"),
            "attack_steps": validation.check_int(self.attack_steps, "attack_steps"),
            "eval_attack_steps": validation.check_int(
                self.eval_attack_steps, "eval_attack_steps"),
            "attack_step_fraction": validation.check_positive(
                self.attack_step_fraction, "attack_step_fraction"),
            "eval_random_start": _check_bool(self.eval_random_start, "eval_random_start"),
            "augment": validation.check_choice(self.augment, "augment", AUGMENTATIONS),
            "crop_padding": validation.check_int(self.crop_padding, "crop_padding", minimum=0),
            "padding_mode": validation.check_choice(
                self.padding_mode, "padding_mode", PADDING_MODES),
        }
        if checked["lr_drop_factor"] > 1:
            raise ValueError(
                f"`lr_drop_factor` must be in (0, 1], got lr_drop_factor={self.lr_drop_factor!r}."
            )
        if checked["momentum"] > 1:
            raise ValueError(f"`momentum` must be in [0, 1], got momentum={self.momentum!r}.")
        for field, value in checked.items():
            object.__setattr__(self, field, value)

    # Learning rate and optimizer.

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate during ``epoch`` (counted from 0).

        Example:

        ```python
        get("paper").learning_rate_at(30)   # 0.01 (up to float rounding)
        ```
        """
        epoch = validation.check_int(epoch, "epoch", minimum=0)
        drops = sum(1 for drop in self.lr_drop_epochs if drop <= epoch)
        return self.learning_rate * self.lr_drop_factor**drops

    def learning_rate_schedule(self, steps_per_epoch: int):
        """The step-wise learning rate: a ``PiecewiseConstantDecay`` over optimizer steps.

        Step ``t`` (the optimizer's ``iterations`` before the update, from 0) is in epoch
        ``t // steps_per_epoch``, so a drop at epoch ``e`` is a boundary at step
        ``e * steps_per_epoch - 1`` (the schedule's value changes after its boundary).

        Args:
            steps_per_epoch: Optimizer steps (batches) per epoch.

        Returns:
            A ``keras.optimizers.schedules.PiecewiseConstantDecay``, or the float
            ``learning_rate`` when there is no drop.

        Example:

        ```python
        schedule = get("paper").learning_rate_schedule(steps_per_epoch=391)
        float(schedule(30 * 391))   # 0.01
        ```
        """
        steps_per_epoch = validation.check_int(steps_per_epoch, "steps_per_epoch")
        epochs = sorted(set(self.lr_drop_epochs))
        if not epochs:
            return self.learning_rate
        boundaries = [epoch * steps_per_epoch - 1 for epoch in epochs]
        values = [self.learning_rate] + [self.learning_rate_at(epoch) for epoch in epochs]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)

    def optimizer(self, steps_per_epoch: int) -> keras.optimizers.SGD:
        """The recipe's SGD, with the learning-rate schedule over ``steps_per_epoch``.

        ``sgd_form="pytorch"`` gives ``TorchSGD`` (a ``keras.optimizers.SGD`` subclass whose
        ``weight_decay`` is PyTorch's L2 term); ``"keras"`` gives ``keras.optimizers.SGD``
        whose ``weight_decay`` is decoupled (``theta -= theta * weight_decay * lr`` before
        each step). See ``TorchSGD`` for how the two relate.

        Args:
            steps_per_epoch: Optimizer steps (batches) per epoch, e.g. ``len(train_ds)``.

        Returns:
            A new, unbuilt optimizer (one per model).

        Example:

        ```python
        model.compile(optimizer=get("paper").optimizer(steps_per_epoch=len(train_ds)))
        ```
        """
        schedule = self.learning_rate_schedule(steps_per_epoch)
        weight_decay = self.weight_decay or None
        if self.sgd_form == "pytorch":
            return TorchSGD(schedule, momentum=self.momentum, nesterov=self.nesterov,
                            weight_decay=weight_decay)
        return keras.optimizers.SGD(schedule, momentum=self.momentum, nesterov=self.nesterov,
                                    weight_decay=weight_decay)

    # Attacks.

    def attack(self, eps: float, norm: str = "linf", value_range=(0.0, 1.0),
               seed: int | None = None) -> attacks.PGD:
        """The training attack: PGD-``attack_steps``, step ``eps * attack_step_fraction``.

        Random (uniform) start, as in Madry et al.'s PGD training.

        Args:
            eps: Radius of the perturbation ball, > 0.
            norm: ``"linf"`` or ``"l2"``.
            value_range: ``(low, high)`` box of valid inputs, or None.
            seed: Non-negative int for reproducible random starts, or None.

        Returns:
            A ``keras_mwat.attacks.PGD``.

        Example:

        ```python
        model = km.PGDATModel(km.zoo.small_cnn(), attack=get("paper").attack(0.1))
        ```
        """
        eps = validation.check_positive(eps, "eps")
        return attacks.PGD(eps=eps, step_size=eps * self.attack_step_fraction,
                           num_steps=self.attack_steps, norm=norm, random_start=True,
                           value_range=value_range, seed=seed)

    def eval_attack(self, eps: float, norm: str = "linf", value_range=(0.0, 1.0),
                    seed: int | None = None, num_restarts: int = 1) -> attacks.PGD:
        """The evaluation attack: PGD-``eval_attack_steps``, step ``eps * attack_step_fraction``.

        Args:
            eps: Radius of the perturbation ball, > 0.
            norm: ``"linf"`` or ``"l2"``.
            value_range: ``(low, high)`` box of valid inputs, or None.
            seed: Non-negative int for reproducible random starts, or None.
            num_restarts: Runs per sample (the worst case is kept).

        Returns:
            A ``keras_mwat.attacks.PGD``, random start if ``eval_random_start``.

        Example:

        ```python
        report = km.evaluate_robustness(classifier, data.test, eps=0.1,
                                        attacks=[get("paper").eval_attack(0.1, seed=0)])
        ```
        """
        eps = validation.check_positive(eps, "eps")
        return attacks.PGD(eps=eps, step_size=eps * self.attack_step_fraction,
                           num_steps=self.eval_attack_steps, norm=norm,
                           random_start=self.eval_random_start, num_restarts=num_restarts,
                           value_range=value_range, seed=seed)

    # Augmentation.

    def augment_fn(self) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
        """The augmentation as a stateless function ``fn(images, seed) -> images``.

        ``images`` is one image (H, W, C) or a batch (n, H, W, C); ``seed`` a shape-(2,)
        integer tensor (the same seed gives the same result). Identity when ``augment`` is
        ``"none"``; otherwise ``crop_flip`` with this recipe's padding.

        Example:

        ```python
        fn = get("paper-cifar").augment_fn()
        augmented = fn(images, tf.constant([1, 2]))
        ```
        """
        if self.augment == "none":
            return lambda images, seed: images
        padding, mode = self.crop_padding, self.padding_mode
        return lambda images, seed: crop_flip(images, seed, padding=padding, mode=mode)

    def prepare(self, dataset: tf.data.Dataset, seed: int | None = None) -> tf.data.Dataset:
        """Applies the recipe's augmentation to a training dataset.

        Works on datasets of single examples or of batches (each image of a batch gets its
        own crop and flip), with elements ``x`` or tuples ``(x, y, ...)`` (only ``x``
        changes). The random numbers come from ``tf.data.Dataset.random(seed)``, drawn anew
        each epoch: with an int ``seed`` the sequence of augmentations over epochs is
        reproducible. Batch and shuffle are not changed. Identity when ``augment`` is
        ``"none"``.

        Args:
            dataset: A ``tf.data.Dataset``.
            seed: Int seed for reproducible augmentation, or None.

        Returns:
            The augmented ``tf.data.Dataset`` (same element structure, shapes and
            cardinality).

        Example:

        ```python
        train = get("paper-cifar").prepare(train_ds, seed=0)
        ```
        """
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                f"`dataset` must be a tf.data.Dataset, got {type(dataset).__name__}."
            )
        if seed is not None:
            seed = validation.check_int(seed, "seed", minimum=0)
        if self.augment == "none":
            return dataset
        spec = dataset.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) else spec
        if not isinstance(x_spec, tf.TensorSpec) or x_spec.shape.rank not in (3, 4):
            raise ValueError(
                "`dataset` must yield images (H, W, C) or batches (n, H, W, C), alone or "
                f"first in a tuple, for augment={self.augment!r}; got element_spec={spec!r}."
            )
        fn = self.augment_fn()

        def apply(element, pair):
            if isinstance(element, tuple):
                return (fn(element[0], pair), *element[1:])
            return fn(element, pair)

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip((dataset, seeds)).map(
            apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    # Variants.

    def scaled(self, epochs: int) -> Recipe:
        """A copy for ``epochs`` epochs, with the drop epochs scaled in proportion.

        Each drop epoch ``e`` becomes ``round(e * epochs / self.epochs)`` (halves round up),
        at least 1, so a short run keeps the schedule's shape.

        Example:

        ```python
        get("paper").scaled(epochs=10).lr_drop_epochs   # (3, 6)
        ```
        """
        epochs = validation.check_int(epochs, "epochs")
        drops = tuple(max(1, (2 * drop * epochs + self.epochs) // (2 * self.epochs))
                      for drop in self.lr_drop_epochs)
        return dataclasses.replace(self, epochs=epochs, lr_drop_epochs=drops)

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed (validated again).

        Example:

        ```python
        get("paper").replace(weight_decay=0.0, sgd_form="keras")
        ```
        """
        return dataclasses.replace(self, **changes)


def crop_flip(images, seed, padding: int = 4, mode: str = "constant") -> tf.Tensor:
    """Random crop of the padded image, then random horizontal flip (stateless).

    Each image is padded by ``padding`` pixels on each side (zeros for ``"constant"``, the
    mirrored image without its edge for ``"reflect"``), a window of the original size is
    cut at an offset drawn uniformly in ``{0, ..., 2 * padding}`` per axis (so the output
    is the image shifted by up to ``padding`` pixels, zeros entering at the border), and
    the result is mirrored left-right with probability 1/2. Each image of a batch draws
    its own offsets and flip.

    Args:
        images: One image (H, W, C) or a batch (n, H, W, C).
        seed: Shape-(2,) int32 or int64 tensor; the same seed gives the same output.
        padding: Pixels of padding per side, >= 0.
        mode: ``"constant"`` (zero padding, as torchvision's ``RandomCrop(32, padding=4)``)
            or ``"reflect"``.

    Returns:
        A tensor of the shape and dtype of ``images``; for images in [0, 1] the values
        stay in [0, 1].

    Example:

    ```python
    out = crop_flip(tf.random.uniform((8, 32, 32, 3)), tf.constant([0, 1]))
    ```
    """
    padding = validation.check_int(padding, "padding", minimum=0)
    mode = validation.check_choice(mode, "mode", PADDING_MODES)
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    if single:
        images = images[tf.newaxis]
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    pads = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    padded = tf.pad(images, pads, mode=mode.upper())
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform(
        tf.stack([n, 2]), crop_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    cols = offsets[:, 1:] + tf.range(width)[tf.newaxis]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform(tf.reshape(n, [1]), flip_seed) < 0.5
    out = tf.where(flip[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(out, axis=[2]), out)
    out = tf.ensure_shape(out, images.shape)
    return out[0] if single else out


PAPER = Recipe("paper")
"""The paper's protocol (MNIST, Fashion-MNIST): no augmentation."""

PAPER_CIFAR = dataclasses.replace(PAPER, name="paper-cifar", augment="crop_flip")
"""The paper's protocol for CIFAR-10/100: random crop (zero padding 4) and flip."""

RECIPES = {recipe.name: recipe for recipe in (PAPER, PAPER_CIFAR)}
"""Named recipes, by name."""


def get(identifier) -> Recipe:
    """Returns a named recipe (``"paper"``, ``"paper-cifar"``), or a ``Recipe`` as is.

    Example:

    ```python
    recipe = get("paper-cifar")
    assert get(recipe) is recipe
    ```
    """
    if isinstance(identifier, Recipe):
        return identifier
    if not isinstance(identifier, str) or identifier not in RECIPES:
        raise ValueError(
            f"`identifier` must be a Recipe or one of {list(RECIPES)}, got {identifier!r}."
        )
    return RECIPES[identifier]
