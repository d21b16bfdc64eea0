"""The training step under ``tf.distribute``: replica bookkeeping and synchronised branches.

Outside ``tf.distribute`` (the default strategy) every function here reduces to the plain
single-device computation. Under a strategy with several replicas (``MirroredStrategy``,
``MultiWorkerMirroredStrategy``), the global batch is split into contiguous per-replica
slices in replica order, and the helpers below let the step compute what one device would
compute on the global batch:

* ``global_offset`` places a replica's slice in the global batch (for positional choices such
  as MWAT's held-out meta split);
* ``replica_seed`` gives each replica its own stateless seed for in-graph randomness;
* ``synchronized_cond`` runs a branch that synchronises replicas (an all-reduce, an
  ``optimizer.apply``) only when a condition holds: TensorFlow cannot synchronise replicas
  inside a ``tf.cond`` taken in replica context, so the condition is evaluated in
  cross-replica context and every replica runs the branch.

``TPUStrategy`` is untested.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from keras_mwat.weighting import global_sum


def num_replicas() -> int:
    """Replicas in sync (1 outside ``tf.distribute``)."""
    context = tf.distribute.get_replica_context()
    return int(context.num_replicas_in_sync) if context is not None else 1


def spans_workers() -> bool:
    """Whether the current strategy's replicas are spread over several worker processes."""
    if not tf.distribute.has_strategy():
        return False
    strategy = tf.distribute.get_strategy()
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices))


def replica_count() -> float:
    """Replicas in sync as a float: scales replica-local losses for logging."""
    return float(num_replicas())


def replica_id() -> tf.Tensor:
    """This replica's index in the sync group (int32 scalar; 0 outside ``tf.distribute``)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def global_offset(local_size) -> tuple[tf.Tensor, tf.Tensor]:
    """(index of this replica's first sample in the global batch, global batch size).

    Assumes the global batch is split into contiguous slices in replica order, which is
    what ``strategy.experimental_distribute_dataset`` does. Both values are int32 scalars.
    """
    local_size = tf.cast(local_size, tf.int32)
    replicas = num_replicas()
    if replicas == 1:
        return tf.constant(0, tf.int32), local_size
    sizes = global_sum(tf.one_hot(replica_id(), replicas, dtype=tf.float32)
                       * tf.cast(local_size, tf.float32))
    sizes = tf.cast(tf.round(sizes), tf.int32)
    offset = tf.reduce_sum(tf.where(tf.range(replicas) < replica_id(), sizes, 0))
    return offset, tf.reduce_sum(sizes)


def replica_slice(total: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(start, stop) of this replica's share of ``total`` items split as evenly as possible."""
    replicas = num_replicas()
    if replicas == 1:
        return tf.constant(0, tf.int32), tf.constant(total, tf.int32)
    index = replica_id()
    return (index * total) // replicas, ((index + 1) * total) // replicas


def replica_seed(generator: keras.random.SeedGenerator):
    """The seed a replica's random draws use.

    Outside ``tf.distribute`` (or with one replica) the generator itself, so single-device
    runs draw exactly as before. With several replicas, a stateless seed pair drawn from the
    generator (same on every replica) with the replica index folded in: replicas draw
    different numbers, reproducibly.
    """
    if num_replicas() == 1:
        return generator
    pair = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32", seed=generator)
    return tf.random.experimental.stateless_fold_in(pair, replica_id())


def synchronized_cond(
    pred,
    true_fn: Callable[..., None],
    args: tuple = (),
    fetch: Callable[[], tuple] | None = None,
) -> None:
    """Runs ``true_fn(*args, *fetch())`` when ``pred`` holds; ``true_fn`` may synchronise.

    Called in replica context (inside a ``train_step``). ``pred`` must be the same on every
    replica (e.g. computed from mirrored variables). ``true_fn`` returns nothing: it acts
    through its side effects (optimizer updates, metric updates), which may all-reduce over
    replicas. ``fetch``, if given, is called in the taken branch only and returns extra
    arguments; under a strategy it is called in cross-replica context and may return
    per-replica values (e.g. ``next`` of a distributed iterator), each replica receiving
    its own.

    Args:
        pred: Boolean scalar tensor.
        true_fn: The branch; receives ``args`` and then the values ``fetch`` returned.
        args: Replica-local arguments (tensors or Python objects, e.g. a tape).
        fetch: Optional callable returning a tuple of extra arguments.
    """

    def branch(run_args):
        extra = tuple(fetch()) if fetch is not None else ()
        true_fn(*run_args, *extra)

    if not tf.distribute.has_strategy():
        tf.cond(pred, lambda: branch(args), lambda: None)
        return

    def cross_replica(strategy, pred, *run_args):
        # ``pred`` is the same on every replica: take the first local one.
        first = strategy.experimental_local_results(pred)[0]

        def taken():
            extra = tuple(fetch()) if fetch is not None else ()
            strategy.extended.call_for_each_replica(true_fn, args=(*run_args, *extra))

        tf.cond(first, taken, lambda: None)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(pred, *args))
