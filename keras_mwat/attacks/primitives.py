"""Building blocks shared by the gradient attacks: ascent direction, projection, starts.

Threat model: a perturbation ``delta`` of each sample bounded in the L-infinity norm
(``"linf"``, ``max |delta| <= eps``) or the L2 norm (``"l2"``, ``||delta||_2 <= eps``), the
norm being taken over all non-batch axes of a sample. Inputs live in a box ``value_range``
(``(0.0, 1.0)`` for images scaled to [0, 1]); ``None`` means unbounded.

The steepest-ascent directions are those of Madry et al., "Towards Deep Learning Models
Resistant to Adversarial Attacks" (ICLR 2018): ``sign(g)`` for L-infinity and ``g / ||g||_2``
for L2. The L2 random start is uniform in the ball (not on its surface).

Every function here is a pure TensorFlow function: it runs eagerly, inside ``tf.function``
and under XLA (``jit_compile=True``). Arguments are trusted: the public classes validate
them at the boundary (see ``keras_mwat.validation``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Smallest norm divided by; a zero gradient or a zero perturbation stays exactly zero.
_TINY = 1e-12


def _compute_dtype(dtype) -> tf.DType:
    """Float32 for half-precision inputs (norms overflow or underflow there), else ``dtype``."""
    dtype = tf.as_dtype(dtype)
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def _scalar(value, dtype) -> tf.Tensor:
    """``value`` as a ``dtype`` tensor; Python floats are converted without a float32 detour."""
    if isinstance(value, tf.Tensor | tf.Variable):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype=dtype)


def _per_sample_l2_norm(value: tf.Tensor) -> tf.Tensor:
    """L2 norm of each sample over all non-batch axes, shape (n, 1, ..., 1)."""
    axes = list(range(1, value.shape.rank))
    return tf.sqrt(tf.reduce_sum(tf.square(value), axis=axes, keepdims=True))


def ascent_direction(grad, norm: str) -> tf.Tensor:
    """Steepest-ascent direction of unit ``norm`` for a batch of gradients.

    Args:
        grad: Gradient of the loss w.r.t. the inputs, shape (n, ...).
        norm: ``"linf"`` (returns ``sign(grad)``) or ``"l2"`` (returns ``grad`` divided by
            its per-sample L2 norm; a zero gradient gives a zero direction).

    Returns:
        A tensor with the shape and dtype of ``grad``.

    Example:

    ```python
    g = tf.constant([[3.0, -4.0]])
    ascent_direction(g, "linf")  # [[1., -1.]]
    ascent_direction(g, "l2")    # [[0.6, -0.8]]
    ```
    """
    grad = tf.convert_to_tensor(grad)
    if norm == "linf":
        return tf.sign(grad)
    if norm == "l2":
        wide = tf.cast(grad, _compute_dtype(grad.dtype))
        unit = wide / tf.maximum(_per_sample_l2_norm(wide), _TINY)
        return tf.cast(unit, grad.dtype)
    raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")


def project(delta, eps, norm: str) -> tf.Tensor:
    """Projects each sample's perturbation onto the ``norm`` ball of radius ``eps``.

    Args:
        delta: Perturbations, shape (n, ...).
        eps: Radius of the ball (a scalar).
        norm: ``"linf"`` clips every coordinate to ``[-eps, eps]``; ``"l2"`` rescales each
            sample whose L2 norm exceeds ``eps`` to norm ``eps`` (others are unchanged).

    Returns:
        A tensor with the shape and dtype of ``delta``.

    Example:

    ```python
    project(tf.constant([[3.0, -4.0]]), 1.0, "linf")  # [[1., -1.]]
    project(tf.constant([[3.0, -4.0]]), 1.0, "l2")    # [[0.6, -0.8]]
    ```
    """
    delta = tf.convert_to_tensor(delta)
    if norm == "linf":
        eps = _scalar(eps, delta.dtype)
        return tf.clip_by_value(delta, -eps, eps)
    if norm == "l2":
        wide = tf.cast(delta, _compute_dtype(delta.dtype))
        eps = _scalar(eps, wide.dtype)
        factor = tf.minimum(
            tf.ones([], wide.dtype), eps / tf.maximum(_per_sample_l2_norm(wide), _TINY)
        )
        return tf.cast(wide * factor, delta.dtype)
    raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")


def clip_to_range(x, value_range) -> tf.Tensor:
    """Clips ``x`` to ``value_range = (low, high)``; identity when ``value_range`` is None.

    Example:

    ```python
    clip_to_range(tf.constant([[-0.5, 0.5, 1.5]]), (0.0, 1.0))  # [[0., 0.5, 1.]]
    ```
    """
    x = tf.convert_to_tensor(x)
    if value_range is None:
        return x
    low, high = value_range
    return tf.clip_by_value(x, _scalar(low, x.dtype), _scalar(high, x.dtype))


def _is_stateless_seed(seed) -> bool:
    return isinstance(seed, tf.Tensor | tf.Variable)


def _seed_source(seed):
    """Normalises ``seed`` into something every draw below understands.

    A ``keras.random.SeedGenerator`` or None (Keras's global generator) is used as is, and
    each draw advances it. An int becomes the stateless seed pair ``[seed, 0]``; a stateless
    seed pair (an int tensor of shape (2,)) is used as is. Several draws from one stateless
    pair fold in the index of the draw, so they are independent yet reproducible.
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator) or _is_stateless_seed(seed):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return tf.constant([seed & 0x7FFFFFFF, 0], dtype=tf.int32)
    raise TypeError(
        "`seed` must be None, an int, a keras.random.SeedGenerator or a stateless seed "
        f"tensor of shape (2,), got {seed!r} ({type(seed).__name__})."
    )


def _draw(kind: str, shape, seed, index: int, dtype) -> tf.Tensor:
    """One standard draw: ``kind`` is "uniform" (in [0, 1)) or "normal" (N(0, 1))."""
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        if kind == "uniform":
            return keras.random.uniform(shape, 0.0, 1.0, dtype=dtype, seed=seed)
        return keras.random.normal(shape, 0.0, 1.0, dtype=dtype, seed=seed)
    pair = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), index)
    if kind == "uniform":
        return tf.random.stateless_uniform(shape, seed=pair, dtype=dtype)
    return tf.random.stateless_normal(shape, seed=pair, dtype=dtype)


def random_start(shape, eps, norm: str, seed=None, dtype=tf.float32) -> tf.Tensor:
    """Draws a random perturbation uniformly in the ``norm`` ball of radius ``eps``.

    For ``"linf"`` every coordinate is uniform in ``[-eps, eps]``. For ``"l2"`` the direction
    is a normalised Gaussian and the radius is ``eps * u ** (1 / d)`` with ``u`` uniform in
    [0, 1) and ``d`` the number of features per sample, which is uniform in the ball.

    Args:
        shape: Shape of the batch, ``(n, ...)`` (a list or an int tensor).
        eps: Radius of the ball (a scalar).
        norm: ``"linf"`` or ``"l2"``.
        seed: A ``keras.random.SeedGenerator`` (advanced by each draw, so repeated calls
            differ but a fixed initial seed gives a fixed sequence), an int (stateless: the
            same draw every call) or None (Keras's global generator). A stateless int32
            seed pair of shape (2,) is also accepted.
        dtype: Floating dtype of the result.

    Returns:
        A tensor of shape ``shape`` and dtype ``dtype``.

    Example:

    ```python
    gen = keras.random.SeedGenerator(0)
    delta = random_start((4, 28, 28, 1), eps=0.3, norm="linf", seed=gen)
    ```
    """
    seed = _seed_source(seed)
    wide = _compute_dtype(dtype)
    if norm == "linf":
        unit = _draw("uniform", shape, seed, 0, wide)
        return tf.cast((2.0 * unit - 1.0) * _scalar(eps, wide), dtype)
    if norm == "l2":
        shape_tensor = tf.convert_to_tensor(shape, dtype=tf.int32)
        direction = _draw("normal", shape_tensor, seed, 0, wide)
        direction = direction / tf.maximum(_per_sample_l2_norm(direction), _TINY)
        batch = shape_tensor[:1]
        features = tf.cast(tf.reduce_prod(shape_tensor[1:]), wide)
        u = _draw("uniform", batch, seed, 1, wide)
        radius = _scalar(eps, wide) * tf.pow(u, 1.0 / features)
        radius = tf.reshape(radius, tf.concat([batch, tf.ones_like(shape_tensor[1:])], 0))
        return tf.cast(direction * radius, dtype)
    raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")


def normal_start(shape, scale, seed=None, dtype=tf.float32) -> tf.Tensor:
    """Draws ``scale * N(0, 1)`` noise (TRADES starts its attack at ``x + 0.001 * N(0, 1)``).

    Args:
        shape: Shape of the batch, ``(n, ...)``.
        scale: Standard deviation of the noise.
        seed: As in ``random_start``.
        dtype: Floating dtype of the result.

    Returns:
        A tensor of shape ``shape`` and dtype ``dtype``.

    Example:

    ```python
    delta = normal_start((4, 32, 32, 3), 0.001, seed=keras.random.SeedGenerator(0))
    ```
    """
    wide = _compute_dtype(dtype)
    noise = _draw("normal", shape, _seed_source(seed), 0, wide)
    return tf.cast(noise * _scalar(scale, wide), dtype)


def boundary_start(shape, eps, norm: str, seed=None, dtype=tf.float32) -> tf.Tensor:
    """Draws a random perturbation on the boundary of the ``norm`` ball (AutoAttack's start).

    APGD (Croce & Hein, ICML 2020) starts from ``x + delta`` with ``delta`` of norm exactly
    ``eps``: for ``"linf"`` a uniform draw in ``[-1, 1]`` rescaled so that its largest
    coordinate has magnitude ``eps``; for ``"l2"`` a Gaussian direction of length ``eps``.

    Args:
        shape: Shape of the batch, ``(n, ...)``.
        eps: Radius of the ball (a scalar).
        norm: ``"linf"`` or ``"l2"``.
        seed: As in ``random_start``.
        dtype: Floating dtype of the result.

    Returns:
        A tensor of shape ``shape`` and dtype ``dtype``.

    Example:

    ```python
    delta = boundary_start((4, 28, 28, 1), eps=0.3, norm="linf", seed=0)
    # tf.reduce_max(tf.abs(delta), axis=[1, 2, 3]) == 0.3 for every sample
    ```
    """
    seed = _seed_source(seed)
    wide = _compute_dtype(dtype)
    eps = _scalar(eps, wide)
    if norm == "linf":
        unit = 2.0 * _draw("uniform", shape, seed, 0, wide) - 1.0
        axes = list(range(1, unit.shape.rank))
        peak = tf.reduce_max(tf.abs(unit), axis=axes, keepdims=True)
        return tf.cast(eps * unit / tf.maximum(peak, _TINY), dtype)
    if norm == "l2":
        direction = _draw("normal", shape, seed, 0, wide)
        return tf.cast(eps * direction / tf.maximum(_per_sample_l2_norm(direction), _TINY), dtype)
    raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")


def run_seed(seed, index):
    """The seed that run ``index`` of a multi-run attack (restart, target) draws from.

    A ``SeedGenerator`` (or None, Keras's global generator) is shared: runs draw from it one
    after the other. An int seed (or a stateless pair) gets the run index folded in, so an
    attack stays deterministic for an int seed, also inside ``tf.function`` where no
    generator variable can be created.

    Example:

    ```python
    first, second = run_seed(0, 0), run_seed(0, 1)   # two different stateless pairs
    ```
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    base = _seed_source(seed)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int32))


def per_sample(mask, rank: int) -> tf.Tensor:
    """Reshapes a (n,) tensor to (n, 1, ..., 1) so that it broadcasts against a batch."""
    return tf.reshape(mask, [-1] + [1] * (rank - 1))


def select(mask, new, old) -> tf.Tensor:
    """Per sample, ``new`` where ``mask`` (shape (n,)) is True and ``old`` elsewhere.

    Example:

    ```python
    select(tf.constant([True, False]), tf.ones((2, 3)), tf.zeros((2, 3)))  # rows 1, 0
    ```
    """
    new = tf.convert_to_tensor(new)
    return tf.where(per_sample(mask, new.shape.rank), new, old)


def stateless_seed(seed=None) -> tf.Tensor:
    """Turns any seed source into one stateless seed pair, for loops of stateless draws.

    Attacks whose randomness lives inside a ``tf.while_loop`` (a fresh draw per iteration)
    derive every draw from one pair with ``tf.random.experimental.stateless_fold_in``, so
    they need no generator state inside the loop and are reproducible for a fixed seed.

    Args:
        seed: As in ``random_start``: a ``keras.random.SeedGenerator`` (advanced once per
            call, so successive calls give different pairs), None (Keras's global
            generator, advanced once), an int (the pair ``[seed, 0]``, every call) or a
            stateless int seed pair of shape (2,) (returned as int32).

    Returns:
        An int32 tensor of shape (2,).

    Example:

    ```python
    pair = stateless_seed(keras.random.SeedGenerator(0))
    noise = tf.random.stateless_uniform((4, 3), seed=pair)
    ```
    """
    seed = _seed_source(seed)
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return keras.random.randint((2,), 0, 0x7FFFFFFF, dtype="int32", seed=seed)
    return tf.cast(seed, tf.int32)
