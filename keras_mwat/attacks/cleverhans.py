"""CleverHans attacks as keras-mwat attacks: ``CleverhansAttack(fn, **kwargs)``.

Wraps a function of ``cleverhans.tf2.attacks`` (CleverHans 4.0, Papernot et al.,
"Technical Report on the CleverHans v2.1.0 Adversarial Examples Library", 2018) so that it
can train (``perturb``, in-graph) and evaluate (``attack(model, x, y)``) like the built-in
attacks: the labels ``y`` are always passed (no label leaking), the model gives logits, and
the keras-mwat validation applies. ``eps`` and ``norm`` (``"linf"`` -> ``np.inf``, ``"l2"``
-> ``2``) are the wrapper's, ``value_range`` becomes ``clip_min`` / ``clip_max``; any other
keyword (``eps_iter``, ``nb_iter``, ``rand_init``, ``decay_factor``, ...) goes to ``fn``
unchanged.

Threat model: the wrapped attack's (all supported ones are white-box, untargeted here),
L-infinity or L2 ball of radius ``eps``; outputs are projected onto the ball and clipped to
``value_range`` once more, so the keras-mwat contract holds.

CleverHans is an optional extra: ``pip install "keras-mwat[cleverhans]"`` (or
``pip install cleverhans``). It is imported only when a ``CleverhansAttack`` is created from
a name. Supported: ``fast_gradient_method``, ``projected_gradient_descent``,
``basic_iterative_method``, ``madry_et_al`` and ``momentum_iterative_method``.
``carlini_wagner_l2`` and ``spsa`` are rejected: they drive ``tf.keras`` optimizers in ways
Keras 3 no longer supports (CW-L2 resets Adam through ``optimizer.variables()``; SPSA
subclasses ``tf.optimizers.Adam`` and overrides its TF1-era internals), so they fail on
Keras 3. Use ``keras_mwat.attacks.CWPGD`` for a margin-loss attack and
``keras_mwat.attacks.Square`` for a gradient-free one.

Caveats of CleverHans itself: its random starts draw from TensorFlow's global generator
(``tf.random.set_seed`` makes them reproducible; the wrapper's ``seed`` cannot reach them),
and it computes in float32 (the wrapper casts inputs to float32 and the result back).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_mwat import validation
from keras_mwat.attacks import primitives
from keras_mwat.attacks.base import Attack
from keras_mwat.attacks.pgd import _class_indices

#: The ``cleverhans.tf2.attacks`` functions known to run on Keras 3.
SUPPORTED = (
    "fast_gradient_method",
    "projected_gradient_descent",
    "basic_iterative_method",
    "madry_et_al",
    "momentum_iterative_method",
)
#: CleverHans attacks that fail on Keras 3, with the reason.
UNSUPPORTED = {
    "carlini_wagner_l2": (
        "it resets its Adam optimizer through `optimizer.variables()`, which Keras 3 "
        "optimizers do not support; use keras_mwat.attacks.CWPGD (PGD on the Carlini-Wagner "
        "margin loss) instead"
    ),
    "spsa": (
        "its SPSAAdam subclasses tf.optimizers.Adam and relies on TF1-era optimizer "
        "internals that Keras 3 removed; use keras_mwat.attacks.Square (gradient-free) "
        "instead"
    ),
}
INSTALL_HINT = 'pip install "keras-mwat[cleverhans]" (or pip install cleverhans)'

# Arguments the wrapper sets itself, and what to use instead.
_MANAGED = {
    "model_fn": "the model is the first argument of `attack(model, x, y)`",
    "x": "inputs are passed to `attack(model, x, y)`",
    "y": "labels are passed to `attack(model, x, y)`",
    "eps": None,
    "norm": None,
    "clip_min": "use value_range=(clip_min, clip_max)",
    "clip_max": "use value_range=(clip_min, clip_max)",
}
# Smallest input-space scale of a `scaled(fraction)` view (fraction 0 still projects to x).
_MIN_SCALE = 1e-6


def _import_attack(name: str) -> Callable:
    try:
        module = importlib.import_module(f"cleverhans.tf2.attacks.{name}")
    except ImportError as error:
        raise ImportError(
            f"CleverhansAttack({name!r}) needs the optional dependency cleverhans, which "
            f"could not be imported ({error}). Install it with: {INSTALL_HINT}."
        ) from error
    return getattr(module, name)


def _reject_unsupported(name: str) -> None:
    if name in UNSUPPORTED:
        raise ValueError(
            f"`fn`={name!r} is not supported: it is broken on Keras 3 because "
            f"{UNSUPPORTED[name]}."
        )


def _resolve(fn) -> tuple[Callable, str | None]:
    """The attack function and its CleverHans name (None for another callable)."""
    if isinstance(fn, str):
        _reject_unsupported(fn)
        if fn not in SUPPORTED:
            raise ValueError(f"`fn` must be one of {list(SUPPORTED)} or a callable, got fn={fn!r}.")
        return _import_attack(fn), fn
    if not callable(fn):
        raise TypeError(
            f"`fn` must be a cleverhans.tf2.attacks function or its name, got {fn!r} "
            f"({type(fn).__name__})."
        )
    name = getattr(fn, "__name__", None)
    _reject_unsupported(name)
    module = getattr(fn, "__module__", "") or ""
    if name in SUPPORTED and module.startswith("cleverhans."):
        return fn, name
    return fn, None


def _check_kwarg(key: str, value, label: str):
    """Validates the CleverHans arguments whose meaning is known; others pass unchanged."""
    if key in ("eps_iter",):
        return validation.check_positive(value, key)
    if key in ("rand_minmax",):
        return validation.check_nonnegative(value, key)
    if key == "nb_iter":
        return validation.check_int(value, key, minimum=1)
    if key == "decay_factor":
        return validation.check_finite(value, key)
    if key in ("rand_init", "targeted", "sanity_checks"):
        if value is not None and not isinstance(value, bool | np.bool_ | int | float):
            raise TypeError(f"`{key}` must be True or False, got {key}={value!r}.")
        value = bool(value) if value is not None else None
        if key == "targeted" and value:
            raise ValueError(
                f"`targeted` must be False for {label}: keras-mwat attacks are untargeted "
                "and `y` holds the true labels."
            )
        if key == "sanity_checks" and value:
            raise ValueError(
                f"`sanity_checks` must be False for {label}: CleverHans evaluates its checks "
                "with NumPy, which fails inside tf.function; keras-mwat validates the inputs "
                "itself."
            )
        return value
    return value


@keras.saving.register_keras_serializable(package="keras_mwat")
class CleverhansAttack(Attack):
    """A ``cleverhans.tf2.attacks`` function as a keras-mwat attack (optional extra).

    ``eps``, ``norm`` and ``value_range`` are keras-mwat's (``norm`` also accepts
    CleverHans's ``np.inf`` and ``2``); every other keyword is passed to ``fn`` as is. See
    ``keras_mwat.attacks.cleverhans`` for the supported functions and why
    ``carlini_wagner_l2`` and ``spsa`` are rejected.

    Args:
        fn: A ``cleverhans.tf2.attacks`` function or its name, e.g.
            ``"projected_gradient_descent"``. Names make the attack serialisable
            (``get_config`` stores the name); another callable with CleverHans's signature
            (``fn(model_fn, x, eps, norm, ..., clip_min, clip_max, y)``) also works but
            serialises only as a Python object.
        eps: Radius of the perturbation ball, >= 0.
        norm: ``"linf"`` or ``"l2"`` (or ``np.inf`` / ``2``).
        value_range: ``(low, high)`` box of valid inputs (``clip_min``, ``clip_max``), or
            None.
        seed: Kept so every attack takes ``seed=``; CleverHans draws its random starts from
            TensorFlow's global generator (seed it with ``tf.random.set_seed``).
        **kwargs: Further arguments of ``fn`` (``eps_iter``, ``nb_iter``, ``rand_init``,
            ``rand_minmax``, ``decay_factor``, ...). ``targeted=True`` and
            ``sanity_checks=True`` are rejected; ``sanity_checks`` defaults to False.

    Raises:
        ImportError: ``fn`` is a name and cleverhans is not installed.
        ValueError: ``fn`` is ``carlini_wagner_l2`` or ``spsa``, or an argument is invalid.
        TypeError: An argument is missing or unknown to ``fn``.

    Example:

    ```python
    attack = keras_mwat.attacks.CleverhansAttack(
        "projected_gradient_descent", eps=0.3, eps_iter=0.01, nb_iter=40, rand_init=True)
    x_adv = attack(model, x_test, y_test, batch_size=256)
    ```
    """

    def __init__(self, fn, eps=8 / 255, norm="linf", value_range=(0.0, 1.0), seed=None, **kwargs):
        super().__init__(eps=eps, norm=norm, value_range=value_range, seed=seed)
        self.fn, self.fn_name = _resolve(fn)
        label = self.fn_name or getattr(self.fn, "__name__", repr(self.fn))
        try:
            parameters = inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            parameters = None
        self._parameters = parameters
        checked = {}
        for key, value in kwargs.items():
            if key in _MANAGED:
                hint = _MANAGED[key] or "it is an argument of CleverhansAttack itself"
                raise TypeError(f"`{key}` is set by CleverhansAttack for {label}: {hint}.")
            if parameters is not None and key not in parameters and not any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
            ):
                accepted = sorted(set(parameters) - set(_MANAGED))
                raise TypeError(
                    f"{label} has no argument `{key}` (got {key}={value!r}); it accepts "
                    f"{accepted}."
                )
            checked[key] = _check_kwarg(key, value, label)
        if parameters is not None:
            missing = [
                name
                for name, p in parameters.items()
                if name not in _MANAGED
                and name not in checked
                and p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            if missing:
                raise TypeError(f"{label} needs the argument(s) {missing}, e.g. eps_iter=0.01.")
            if "sanity_checks" in parameters:
                checked.setdefault("sanity_checks", False)
        if "eps_iter" in checked and self.fn_name in (
            "projected_gradient_descent",
            "basic_iterative_method",
            "madry_et_al",
        ) and checked["eps_iter"] > self.eps:
            raise ValueError(
                f"`eps_iter` must be <= eps for {label}, got eps_iter={checked['eps_iter']!r} "
                f"and eps={self.eps!r}."
            )
        self.kwargs = checked

    def _accepts(self, name: str) -> bool:
        return self._parameters is None or name in self._parameters

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs the CleverHans attack on a batch (see ``Attack._perturb``); graph-safe.

        ``loss_fn`` is passed to ``fn`` as its ``loss_fn`` (as ``loss_fn(labels=, logits=)``)
        and raises for functions without one (``momentum_iterative_method``). A ``scaled``
        view scales ``eps``, ``eps_iter`` and ``rand_minmax``. ``seed`` is ignored
        (CleverHans draws its own start) and there is no trace.

        Returns:
            ``(x_adv, None)``, ``x_adv`` with the shape and dtype of ``x``.
        """
        strength = self._fraction
        label = self.fn_name or getattr(self.fn, "__name__", "fn")
        x = tf.stop_gradient(tf.convert_to_tensor(x))
        labels = _class_indices(y)
        kwargs = dict(self.kwargs)
        if loss_fn is not None:
            if not self._accepts("loss_fn"):
                raise ValueError(
                    f"{label} takes no `loss_fn`, so it cannot maximise this method's attack "
                    "objective; wrap projected_gradient_descent or fast_gradient_method."
                )
            kwargs["loss_fn"] = lambda labels, logits: loss_fn(labels, logits)
        # A strength s runs the attack in coordinates x / s: every length (eps, eps_iter,
        # rand_minmax) shrinks by s in x, without handing CleverHans a tensor eps (its
        # Python `assert eps_iter <= eps` cannot evaluate a symbolic comparison).
        scale = None if strength is None else tf.maximum(tf.cast(strength, tf.float32), _MIN_SCALE)
        x_in = tf.cast(x, tf.float32)
        if scale is not None:
            x_in = x_in / scale
        if self.value_range is not None:
            low, high = self.value_range
            kwargs["clip_min"] = low if scale is None else low / scale
            kwargs["clip_max"] = high if scale is None else high / scale

        def model_float32(z):
            if scale is not None:
                z = z * scale
            return model_fn(tf.cast(z, x.dtype))

        x_adv = self.fn(
            model_float32,
            x_in,
            eps=self.eps,
            norm=np.inf if self.norm == "linf" else 2,
            y=labels,
            **kwargs,
        )
        if scale is not None:
            x_adv = x_adv * scale
        x_adv = tf.cast(x_adv, x.dtype)
        eps = primitives._scalar(self.eps, x.dtype)
        if strength is not None:
            eps = eps * tf.cast(strength, x.dtype)
        delta = primitives.project(x_adv - x, eps, self.norm)
        return tf.stop_gradient(primitives.clip_to_range(x + delta, self.value_range)), None

    def get_config(self) -> dict:
        """Returns the constructor arguments (``fn`` as its name when it has one)."""
        config = {"fn": self.fn_name if self.fn_name is not None else self.fn}
        config.update(super().get_config())
        config.update(self.kwargs)
        return config
