"""Attack classes: validated, serialisable hyperparameters over the pure attack functions.

Paper: PGD from Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks" (ICLR 2018); FGSM from Goodfellow et al., "Explaining and Harnessing Adversarial
Examples" (ICLR 2015).

Threat model: white-box, untargeted, L-infinity or L2 perturbations of radius ``eps`` per
sample. Input range: ``value_range`` (default ``(0.0, 1.0)``, images scaled to [0, 1];
``None`` for unbounded inputs); adversarial inputs never leave it.

An ``Attack`` has two entry points:

* ``attack(model, x, y)`` for standalone use on any Keras model that outputs logits; it
  validates NumPy or tensor inputs and runs a ``tf.function`` cached per model.
* ``attack.perturb(model_fn, x, y, seed=None, loss_fn=None)``, graph-safe (tensors in,
  tensors out), used by the training models inside their ``train_step``: the model function,
  the batch, the seed and the loss to maximise, nothing method-specific.

What a training method adapts, it adapts through the attack object, never through
``perturb``'s arguments: ``attack.scaled(fraction)`` is the same attack on a smaller ball
(the epsilon warm-up), ``attack.with_init("normal")`` the same attack from another random
start (TRADES's ``x + 0.001 N(0, 1)``), and ``attack.perturb_with_trace(...)`` also returns
what the iterations recorded (an ``AttackTrace``: GAIRAT's kappa). Subclasses implement one
hook, ``_perturb``, with their own settings; ``perturb`` and ``perturb_with_trace`` are
written once, here.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import losses, validation
from keras_mwat.attacks.apgd import LOSSES as APGD_LOSSES
from keras_mwat.attacks.apgd import apgd
from keras_mwat.attacks.pgd import INITS, pgd


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be True or False, got {name}={value!r}.")
    return bool(value)


def _check_seed(seed) -> int | None:
    if seed is None:
        return None
    return validation.check_int(seed, "seed", minimum=0)


def _num_classes(model, x: np.ndarray) -> int:
    """Number of logits ``model`` outputs, from its output shape or a one-sample probe."""
    num_classes = None
    try:
        output_shape = model.output_shape
        if isinstance(output_shape, list):
            output_shape = output_shape[0]
        num_classes = output_shape[-1]
    except (AttributeError, ValueError, TypeError, IndexError):
        num_classes = None
    if num_classes is None:
        probe = _model_fn(model)(tf.convert_to_tensor(x[:1]))
        num_classes = probe.shape[-1]
    if num_classes is None or num_classes < 2:
        raise ValueError(
            f"`model` must output logits of shape (n, num_classes >= 2), got {num_classes} "
            "outputs per sample."
        )
    return int(num_classes)


#: Points of the first batch a new model is run on to check that it outputs logits.
_PROBE_POINTS = 8


def _model_fn(model) -> Callable[[tf.Tensor], tf.Tensor]:
    if isinstance(model, keras.Layer):
        return lambda z: model(z, training=False)
    return model


class _Perturb:
    """``attack.perturb`` on the model behind ``model_ref``: the body of an attack's function."""

    def __init__(self, attack, model_ref):
        self.attack = attack
        self.model_ref = model_ref

    def __call__(self, x, y):
        return self.attack.perturb(lambda z: _model_fn(self.model_ref())(z), x, y)


class AttackTrace(NamedTuple):
    """What an iterative attack recorded along its iterates, per sample.

    Returned by ``Attack.perturb_with_trace``. A named tuple, so a ``tf.function`` can
    return it (``num_steps`` then comes back as a scalar tensor).

    Attributes:
        correct_steps: int32 tensor of shape (n,): the number of iterations (0 to
            ``num_steps``) that started from an iterate the model classified correctly.
            This is GAIRAT's geometry value kappa (Zhang et al., ICLR 2021): small for
            points that the attack pushes across the boundary early. With restarts, that of
            the restart kept for the sample.
        num_steps: The number of iterations of a run (GAIRAT's K).

    Example:

    ```python
    attack = keras_mwat.attacks.PGD(eps=0.3, step_size=0.1, num_steps=10, seed=0)
    x_adv, trace = attack.perturb_with_trace(lambda z: model(z, training=False), x, y)
    weights = keras_mwat.weighting.gairat(trace.correct_steps, trace.num_steps)
    ```
    """

    correct_steps: Any
    num_steps: int


#: The keyword arguments ``perturb`` took before issue 16, and what replaces each.
_DEPRECATED_PERTURB_ARGUMENTS = {
    "return_kappa": "call `attack.perturb_with_trace(...)`; kappa is its trace's `correct_steps`",
    "strength": "call `attack.scaled(strength).perturb(...)`",
    "init": "call `attack.with_init(init).perturb(...)`",
}


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_)


@keras.saving.register_keras_serializable(package="keras_mwat")
class Attack:
    """Base class of the attacks: common hyperparameters, validation and standalone use.

    Every attack takes ``eps`` (radius of the ball), ``norm`` (``"linf"`` or ``"l2"``),
    ``value_range`` (the ``(low, high)`` box of valid inputs, or None) and ``seed`` (an int
    for reproducible random draws, or None).

    One call for all attacks: ``perturb(model_fn, x, y, seed=None, loss_fn=None)`` (and
    ``perturb_with_trace`` with the same arguments, for attacks that record their
    iterates) is implemented here, once. A subclass implements the hook
    ``_perturb(model_fn, x, y, *, seed, loss_fn, trace)`` with its own settings, returning
    ``(x_adv, AttackTrace or None)``; it reads its radius through ``self._radius(length)``
    so that ``scaled`` views work, and extends ``get_config``.

    Args:
        eps: Radius of the perturbation ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` or None.
        seed: Non-negative int or None.

    Example:

    ```python
    class Noise(Attack):
        def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace):
            gen = self.seed_generator if seed is None else seed
            eps = self._radius(self.eps)
            delta = primitives.random_start(tf.shape(x), eps, self.norm, gen, x.dtype)
            return primitives.clip_to_range(x + delta, self.value_range), None

    x_adv = Noise(eps=0.1)(model, x, y)
    ```
    """

    #: Whether ``perturb_with_trace`` is available (iterative gradient attacks: PGD).
    records_trace = False
    # Views (``scaled``, ``with_init``): the fraction of the radius, and the attack they view.
    _fraction = None
    _root = None

    def __init__(self, eps=8 / 255, norm="linf", value_range=(0.0, 1.0), seed=None):
        self.eps = validation.check_nonnegative(eps, "eps")
        self.norm = validation.check_norm(norm)
        self.value_range = validation.check_value_range(value_range)
        self.seed = _check_seed(seed)
        self._seed_generator = None
        self._functions = weakref.WeakKeyDictionary()

    @property
    def seed_generator(self) -> keras.random.SeedGenerator:
        """The attack's own ``SeedGenerator(self.seed)``, created on first use.

        Views made by ``scaled`` and ``with_init`` share the generator of their attack.
        """
        if self._root is not None:
            return self._root.seed_generator
        if self._seed_generator is None:
            # Created outside any tf.function being traced, so a first use in a graph works.
            with tf.init_scope():
                self._seed_generator = keras.random.SeedGenerator(self.seed)
        return self._seed_generator

    # ------------------------------------------------------------------ the call
    def perturb(
        self,
        model_fn: Callable[[tf.Tensor], tf.Tensor],
        x: tf.Tensor,
        y: tf.Tensor,
        seed: keras.random.SeedGenerator | Any | None = None,
        loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
        **deprecated,
    ) -> tf.Tensor:
        """Returns adversarial inputs for a batch; graph-safe, tensors in and out.

        Args:
            model_fn: Maps a batch to logits, e.g. ``lambda z: model(z, training=False)``.
            x: Clean inputs, shape (n, ...).
            y: Integer labels, shape (n,).
            seed: Where the random draws come from: a ``keras.random.SeedGenerator``, a
                stateless seed (an int or a shape-(2,) int tensor), or None for the
                attack's own generator (``seed_generator``).
            loss_fn: Per-sample loss ``loss_fn(y, logits)`` of shape (n,) to maximise, or
                None for the attack's own. Attacks that maximise no loss (FAB) raise.
            **deprecated: ``return_kappa``, ``strength`` and ``init``, the method-specific
                arguments of earlier releases: they still work, with a
                ``DeprecationWarning``; use ``perturb_with_trace``, ``scaled`` and
                ``with_init`` instead.

        Returns:
            ``x_adv``, shape and dtype of ``x``, inside the ball and ``value_range``.

        Example:

        ```python
        attack = keras_mwat.attacks.PGD(eps=0.3, step_size=0.1, num_steps=10)
        x_adv = attack.perturb(lambda z: model(z, training=False), x, y,
                               seed=keras.random.SeedGenerator(0))
        ```
        """
        if deprecated:
            return self._deprecated_perturb(model_fn, x, y, seed, loss_fn, deprecated)
        x_adv, _ = self._perturb(model_fn, x, y, seed=seed, loss_fn=loss_fn, trace=False)
        return x_adv

    def perturb_with_trace(
        self,
        model_fn: Callable[[tf.Tensor], tf.Tensor],
        x: tf.Tensor,
        y: tf.Tensor,
        seed: keras.random.SeedGenerator | Any | None = None,
        loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, AttackTrace]:
        """``perturb``, plus the ``AttackTrace`` of the iterates (same arguments).

        The adversarial inputs are those ``perturb`` returns for the same seed.

        Returns:
            ``(x_adv, trace)``.

        Raises:
            ValueError: The attack records no trace (``records_trace`` is False: APGD,
                FAB, Square, CleverhansAttack).

        Example:

        ```python
        x_adv, trace = attack.perturb_with_trace(lambda z: model(z, training=False), x, y)
        trace.correct_steps  # (n,) int32: GAIRAT's kappa
        ```
        """
        if not self.records_trace:
            raise ValueError(
                f"{type(self).__name__} records no trace of its iterates (GAIRAT's kappa "
                "counts correctly classified PGD iterates); use PGD, FGSM or CWPGD."
            )
        return self._perturb(model_fn, x, y, seed=seed, loss_fn=loss_fn, trace=True)

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """The subclass hook behind ``perturb`` and ``perturb_with_trace``.

        Args:
            model_fn, x, y, seed, loss_fn: As in ``perturb`` (``seed`` may be None: the
                attack's own ``seed_generator``).
            trace: Whether to return an ``AttackTrace`` (only asked of attacks whose
                ``records_trace`` is True).

        Returns:
            ``(x_adv, AttackTrace or None)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `_perturb`.")

    def _deprecated_perturb(self, model_fn, x, y, seed, loss_fn, options: dict):
        unknown = sorted(set(options) - set(_DEPRECATED_PERTURB_ARGUMENTS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.perturb() got an unexpected keyword argument "
                f"{unknown[0]!r}; it takes model_fn, x, y, seed and loss_fn."
            )
        advice = "; ".join(f"`{name}=`: {_DEPRECATED_PERTURB_ARGUMENTS[name]}"
                           for name in sorted(options))
        warnings.warn(
            f"{type(self).__name__}.perturb's method-specific arguments are deprecated and "
            f"will be removed in the next release ({advice}).",
            DeprecationWarning,
            stacklevel=3,
        )
        attack = self
        if options.get("strength") is not None:
            attack = attack.scaled(options["strength"])
        if options.get("init") is not None:
            attack = attack.with_init(options["init"])
        if options.get("return_kappa"):
            x_adv, trace = attack.perturb_with_trace(model_fn, x, y, seed=seed, loss_fn=loss_fn)
            return x_adv, trace.correct_steps
        return attack.perturb(model_fn, x, y, seed=seed, loss_fn=loss_fn)

    # ------------------------------------------------------------------ views
    def scaled(self, fraction) -> Attack:
        """The same attack on the ball of radius ``fraction * eps``: the epsilon warm-up.

        Every length of the attack shrinks by ``fraction``: the radius, and with it PGD's
        step size (APGD, FAB and Square derive their steps from the radius; a
        ``CleverhansAttack`` runs in coordinates scaled by ``fraction``). The view shares
        the attack's random generator; its ``eps`` and ``get_config`` stay the configured
        ones (``repr`` shows the fraction). Scaling a view multiplies the fractions.

        Args:
            fraction: A number in [0, 1], or a scalar float tensor or variable (read at
                every call: ``keras_mwat.callbacks.EpsilonWarmup`` ramps the model's
                ``attack_strength`` variable from 0 to 1).

        Returns:
            An ``Attack`` of the same class.

        Example:

        ```python
        attack = keras_mwat.attacks.PGD(eps=0.3, step_size=0.01, num_steps=40)
        x_adv = attack.scaled(0.5).perturb(model_fn, x, y)   # radius 0.15, step 0.005
        ```
        """
        if _is_number(fraction):
            if not 0.0 <= float(fraction) <= 1.0:
                raise ValueError(
                    f"`fraction` must be in [0, 1] (a smaller radius than eps={self.eps!r}), "
                    f"got fraction={fraction!r}."
                )
        elif not hasattr(fraction, "dtype"):
            raise TypeError(
                "`fraction` must be a number in [0, 1] or a scalar float tensor or variable, "
                f"got fraction={fraction!r} ({type(fraction).__name__})."
            )
        view = self._view()
        view._fraction = fraction if self._fraction is None else self._fraction * fraction
        return view

    def with_init(self, init: str) -> Attack:
        """The same attack drawing its random start from ``init``.

        ``"uniform"`` is uniform in the ball; ``"normal"`` is ``x + 0.001 * N(0, 1)`` (the
        start TRADES prescribes, chosen by ``TRADESObjective``). Attacks whose start is
        part of their algorithm (APGD, FAB, Square, CleverhansAttack) and attacks without
        a random start return themselves.

        Args:
            init: ``"uniform"`` or ``"normal"``.

        Returns:
            An ``Attack`` of the same class (``self`` when nothing changes).

        Example:

        ```python
        trades_attack = keras_mwat.attacks.PGD(eps=0.3, step_size=0.05).with_init("normal")
        ```
        """
        validation.check_choice(init, "init", INITS)
        return self

    def _view(self) -> Attack:
        """A shallow copy of this attack sharing its random generator (``scaled``, ...)."""
        view = copy.copy(self)
        view._functions = weakref.WeakKeyDictionary()
        view._root = self if self._root is None else self._root
        return view

    def _radius(self, length):
        """``length`` (a radius or a step size) times the view's fraction, if any."""
        return length if self._fraction is None else length * self._fraction

    def __call__(self, model, x, y, batch_size: int | None = None) -> tf.Tensor:
        """Attacks ``model`` on ``(x, y)``; NumPy arrays or tensors in, a tensor out.

        Args:
            model: A Keras model (or any callable) mapping a batch to logits.
            x: Inputs of shape (n, ...) inside ``value_range``. Integer inputs are
                converted to ``keras.config.floatx()``; floating inputs keep their dtype.
            y: Integer labels of shape (n,) or one-hot labels of shape (n, num_classes).
            batch_size: If given, attack the data in chunks of this many samples.

        Returns:
            A ``tf.Tensor`` of adversarial inputs with the shape (and floating dtype) of
            ``x``.

        Raises:
            ValueError: ``model`` outputs probabilities (e.g. it ends with a softmax)
                instead of logits, or ``x`` or ``y`` is invalid.
        """
        x = validation.check_inputs(x, self.value_range)
        labels = validation.check_labels(
            y, num_classes=_num_classes(model, x), batch_size=x.shape[0]
        )
        if batch_size is not None:
            batch_size = validation.check_int(batch_size, "batch_size")
        if x.dtype.kind != "f":
            x = x.astype(keras.config.floatx())
        if x.shape[0] == 0:
            return tf.convert_to_tensor(x)
        _ = self.seed_generator  # created eagerly, before tracing
        run = self._function_for(model, x)
        step = batch_size or x.shape[0]
        outputs = [
            run(tf.convert_to_tensor(x[i : i + step]), tf.convert_to_tensor(labels[i : i + step]))
            for i in range(0, x.shape[0], step)
        ]
        return outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=0)

    def _function_for(self, model, x: np.ndarray | None = None):
        """A ``tf.function`` running ``perturb`` on ``model``, cached per model and config.

        Before building a new function, ``model`` is probed on the first points of ``x``
        (when given) and refused if it outputs probabilities: the attacks' losses need
        logits, and on a softmax they saturate and fail silently (the model looks robust).

        When ``x`` is given, the function is traced once for every batch size: its input
        signature has a ``None`` batch dimension (and the trailing shape and dtype of ``x``),
        so the last, smaller batch of a dataset or an evaluation cascade's shrinking set of
        points reuses the same graph.
        """
        signature = None
        if x is not None:
            signature = (
                tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)),
                tf.TensorSpec((None,), tf.int64),
            )
        config, shapes = repr(sorted(self.get_config().items())), repr(signature)
        try:
            cached = self._functions.get(model)
        except TypeError:  # not weak-referenceable or not hashable: no caching
            cached = None
        # Without ``x``, any function of this model and configuration will do.
        if cached is not None and cached[0][0] == config and (x is None or cached[0][1] == shapes):
            return cached[1]
        key = (config, shapes)
        if x is not None:
            probe = _model_fn(model)(tf.convert_to_tensor(x[:_PROBE_POINTS]))
            validation.check_logits(probe, name="model")
        try:
            model_ref = weakref.ref(model)
        except TypeError:
            model_ref = lambda: model  # noqa: E731
        # A callable object, not a closure: TensorFlow's "frequent retracing" warning counts
        # traces per code object, so closures of every attack and model would share one
        # count and warn although each function traces once.
        run = tf.function(_Perturb(self, model_ref), input_signature=signature,
                          reduce_retracing=signature is None)
        try:
            self._functions[model] = (key, run)
        except TypeError:
            pass
        return run

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        return {
            "eps": self.eps,
            "norm": self.norm,
            "value_range": self.value_range,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict):
        """Creates an attack from the output of ``get_config``."""
        return cls(**config)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_seed_generator"] = None
        state["_functions"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._functions = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        scaled = "" if self._fraction is None else f".scaled({self._fraction!r})"
        return f"{type(self).__name__}({args}){scaled}"


@keras.saving.register_keras_serializable(package="keras_mwat")
class PGD(Attack):
    """Projected gradient descent on the cross-entropy (Madry et al., 2018).

    Args:
        eps: Radius of the perturbation ball, >= 0.
        step_size: Length of each ascent step (in ``norm``), > 0.
        num_steps: Number of steps, >= 1.
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a random point in the ball (see ``init``) rather than
            the clean input.
        num_restarts: Number of runs; per sample, the run with the highest final loss is
            kept.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Non-negative int for reproducible random starts, or None.
        init: ``"uniform"`` (uniform in the ball) or ``"normal"`` (``x + 0.001 * N(0, 1)``,
            the TRADES start).

    Example:

    ```python
    attack = keras_mwat.attacks.PGD(eps=0.3, step_size=0.01, num_steps=40, seed=0)
    x_adv = attack(model, x_test, y_test, batch_size=256)
    ```
    """

    records_trace = True

    def __init__(
        self,
        eps=8 / 255,
        step_size=2 / 255,
        num_steps=10,
        norm="linf",
        random_start=True,
        num_restarts=1,
        value_range=(0.0, 1.0),
        seed=None,
        init="uniform",
    ):
        super().__init__(eps=eps, norm=norm, value_range=value_range, seed=seed)
        self.step_size = validation.check_positive(step_size, "step_size")
        self.num_steps = validation.check_int(num_steps, "num_steps", minimum=1)
        self.random_start = _check_bool(random_start, "random_start")
        self.num_restarts = validation.check_int(num_restarts, "num_restarts", minimum=1)
        self.init = validation.check_choice(init, "init", INITS)

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs ``pgd`` with this attack's settings (see ``Attack._perturb``); the trace
        counts the correctly classified iterates (``pgd``'s ``return_kappa``)."""
        result = pgd(
            model_fn,
            x,
            y,
            eps=self._radius(self.eps),
            step_size=self._radius(self.step_size),
            num_steps=self.num_steps,
            norm=self.norm,
            random_start=self.random_start,
            num_restarts=self.num_restarts,
            value_range=self.value_range,
            loss_fn=loss_fn,
            seed=self.seed_generator if seed is None else seed,
            init=self.init,
            return_kappa=trace,
        )
        if not trace:
            return result, None
        x_adv, kappa = result
        return x_adv, AttackTrace(correct_steps=kappa, num_steps=self.num_steps)

    def with_init(self, init: str) -> Attack:
        """The same PGD drawing its random start from ``init`` (see ``Attack.with_init``)."""
        init = validation.check_choice(init, "init", INITS)
        if init == self.init or not self.random_start:
            return self
        view = self._view()
        view.init = init
        return view

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        config = super().get_config()
        config.update(
            step_size=self.step_size,
            num_steps=self.num_steps,
            random_start=self.random_start,
            num_restarts=self.num_restarts,
            init=self.init,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_mwat")
class FGSM(PGD):
    """Fast gradient sign method: one step of length ``eps`` from ``x`` (Goodfellow et al.).

    With ``norm="l2"`` this is the fast gradient method ``x + eps * g / ||g||_2``.

    Args:
        eps: Radius of the perturbation ball (and step length), >= 0.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Unused (FGSM is deterministic); kept so every attack takes ``seed=``.

    Example:

    ```python
    x_adv = keras_mwat.attacks.FGSM(eps=8 / 255)(model, x, y)
    ```
    """

    def __init__(self, eps=8 / 255, norm="linf", value_range=(0.0, 1.0), seed=None):
        eps = validation.check_nonnegative(eps, "eps")
        super().__init__(
            eps=eps,
            step_size=eps if eps > 0 else 1.0,  # any step stays at x when eps == 0
            num_steps=1,
            norm=norm,
            random_start=False,
            num_restarts=1,
            value_range=value_range,
            seed=seed,
        )
        self.step_size = eps

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        return Attack.get_config(self)


@keras.saving.register_keras_serializable(package="keras_mwat")
class CWPGD(PGD):
    """PGD on the Carlini-Wagner margin loss ``max_{j != y} z_j - z_y`` (CW-PGD).

    Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks" (IEEE S&P
    2017), loss maximised by PGD as in Madry et al.; the margin loss does not saturate like
    the cross-entropy of a confident model, so CW-PGD is a standard second opinion. Same
    arguments as ``PGD``.

    Example:

    ```python
    attack = keras_mwat.attacks.CWPGD(eps=0.3, step_size=0.01, num_steps=100, seed=0)
    x_adv = attack(model, x, y)
    ```
    """

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs ``pgd`` on ``losses.cw_margin`` (or ``loss_fn``; see ``Attack._perturb``)."""
        return super()._perturb(model_fn, x, y, seed=seed, loss_fn=loss_fn or losses.cw_margin,
                                trace=trace)


@keras.saving.register_keras_serializable(package="keras_mwat")
class APGD(Attack):
    """Auto-PGD (Croce & Hein, ICML 2020): AutoAttack's APGD-CE and APGD-T.

    A step-size-free PGD with momentum, checkpoints that halve the step size and restart
    from the best point, and the DLR loss; see ``keras_mwat.attacks.apgd`` for the exact
    schedule. ``APGD(loss="ce")`` is APGD-CE; ``APGD(loss="dlr", targeted=True,
    num_target_classes=9)`` is APGD-T as in AutoAttack's "standard" version.

    Args:
        eps: Radius of the perturbation ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        num_steps: Iterations per run (AutoAttack: 100).
        num_restarts: Random restarts per target class (untargeted: in total).
        loss: ``"ce"`` or ``"dlr"`` (untargeted DLR needs >= 3 classes, targeted >= 4).
        targeted: Run APGD-T over the top ``num_target_classes`` runner-up classes.
        num_target_classes: Number of target classes for APGD-T (capped at K - 1).
        rho: Checkpoint threshold on the fraction of loss increases (0.75).
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Non-negative int for reproducible random starts, or None.

    Example:

    ```python
    apgd_ce = keras_mwat.attacks.APGD(eps=8 / 255, seed=0)
    apgd_t = keras_mwat.attacks.APGD(eps=8 / 255, loss="dlr", targeted=True, seed=0)
    x_adv = apgd_t(model, x_test, y_test, batch_size=500)
    ```
    """

    def __init__(
        self,
        eps=8 / 255,
        norm="linf",
        num_steps=100,
        num_restarts=1,
        loss="ce",
        targeted=False,
        num_target_classes=9,
        rho=0.75,
        value_range=(0.0, 1.0),
        seed=None,
    ):
        super().__init__(eps=eps, norm=norm, value_range=value_range, seed=seed)
        self.num_steps = validation.check_int(num_steps, "num_steps", minimum=1)
        self.num_restarts = validation.check_int(num_restarts, "num_restarts", minimum=1)
        self.loss = validation.check_choice(loss, "loss", APGD_LOSSES)
        self.targeted = _check_bool(targeted, "targeted")
        self.num_target_classes = validation.check_int(
            num_target_classes, "num_target_classes", minimum=1
        )
        self.rho = validation.check_positive(rho, "rho")
        if self.rho > 1:
            raise ValueError(f"`rho` must be in (0, 1], got rho={rho!r}.")

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs ``apgd`` with this attack's settings (see ``Attack._perturb``).

        ``loss_fn`` replaces the attack's loss (untargeted only); APGD has its own start
        and records no trace.
        """
        if loss_fn is not None and self.targeted:
            raise ValueError("A targeted APGD uses its own loss; `loss_fn` must be None.")
        x_adv = apgd(
            model_fn,
            x,
            y,
            eps=self._radius(self.eps),
            num_steps=self.num_steps,
            norm=self.norm,
            num_restarts=self.num_restarts,
            loss=self.loss,
            targeted=self.targeted,
            num_target_classes=self.num_target_classes,
            rho=self.rho,
            value_range=self.value_range,
            seed=self.seed_generator if seed is None else seed,
            loss_fn=loss_fn,
        )
        return x_adv, None

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        config = super().get_config()
        config.update(
            num_steps=self.num_steps,
            num_restarts=self.num_restarts,
            loss=self.loss,
            targeted=self.targeted,
            num_target_classes=self.num_target_classes,
            rho=self.rho,
        )
        return config
