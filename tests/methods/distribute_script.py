"""Trains methods on one device and under a tf.distribute strategy; saves both results.

Used by tests/methods/test_distribute.py (and test_xla.py, for its models and data), in a
fresh process, because logical devices and ``MultiWorkerMirroredStrategy`` must be set up
before TensorFlow initialises:

    python tests/methods/distribute_script.py OUT.npz --strategy mirrored --configs a,b
    TF_CONFIG=... python tests/methods/distribute_script.py OUT.npz --strategy multiworker ...

For every configuration the script builds a model on the default (single-device) strategy,
records its initial weights and trains it for one epoch of ``STEPS`` global batches of
``GLOBAL_BATCH`` samples (no shuffling, a deterministic attack; a validation pass for the
configurations in ``VALIDATED``); it
then builds the same model under the strategy, loads the initial weights and trains it on
the same global batches. ``OUT.npz`` holds, per configuration and run (``single`` /
``distributed`` / ``initial``), the classifier and weight-network weights and the logged
metrics, plus probes of the replica helpers; worker 1 of a multi-worker run writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 16
STEPS = 3
NUM_CLASSES = 4
FEATURES = 12
#: Configurations that also run a validation pass (test_step) on both devices.
VALIDATED = ("pgd_at", "mwat_split")
LOGGED = ("loss", "meta_loss", "mean_weight", "weight_std", "accuracy", "robust_accuracy",
          "val_loss", "val_accuracy", "val_robust_accuracy")


def make_data():
    """A learnable synthetic problem in [0, 1]^FEATURES: train (STEPS global batches), meta."""
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.uniform(0.0, 1.0, size=(n, FEATURES)).astype("float32")
    projection = rng.normal(size=(FEATURES, NUM_CLASSES))
    y = np.argmax((x - 0.5) @ projection, axis=1).astype("int32")
    x_meta = rng.uniform(0.0, 1.0, size=(32, FEATURES)).astype("float32")
    y_meta = np.argmax((x_meta - 0.5) @ projection, axis=1).astype("int32")
    return x, y, x_meta, y_meta


def deterministic_pgd():
    import keras_mwat as km

    return km.attacks.PGD(eps=0.2, step_size=0.1, num_steps=2, random_start=False)


def shifted_pgd():
    """A deterministic PGD that starts from a fixed offset of each input.

    TRADES's KL objective has a zero gradient at ``x`` itself, so PGD without a random start
    would follow rounding noise; the offset (a function of the sample alone) avoids that
    while keeping the attack identical on every device.
    """
    import keras_mwat as km

    class ShiftedPGD(km.attacks.PGD):
        def perturb(self, model_fn, x, y, seed=None, **kwargs):
            start = tf.clip_by_value(x + 0.05 * tf.cos(37.0 * x), 0.0, 1.0)
            return super().perturb(model_fn, start, y, seed=seed, **kwargs)

    return ShiftedPGD(eps=0.2, step_size=0.1, num_steps=2, random_start=False)


def configurations(x_meta, y_meta) -> dict:
    """Name -> (model class, keyword arguments) of every configuration under test."""
    import keras_mwat as km

    meta_batches = tf.data.Dataset.from_tensor_slices((x_meta, y_meta)).batch(16)
    return {
        "mwat_batch": (km.MWATModel, {"meta_source": "batch"}),
        "mwat_split": (km.MWATModel, {"meta_source": "split", "meta_objective": "both"}),
        "mwat_reverse": (km.MWATModel, {"meta_source": "split", "meta_objective": "both",
                                        "hypergradient_mode": "reverse"}),
        "mwat_every2": (km.MWATModel, {"meta_update_every": 2, "meta_objective": "clean",
                                       "meta_data": (x_meta, y_meta), "meta_batch_size": 8}),
        "mwat_trades": (km.MWATModel, {"base": "trades", "attack": shifted_pgd(),
                                       "meta_data": (x_meta, y_meta), "meta_batch_size": 8}),
        "mwat_meta_arrays": (km.MWATModel, {"meta_source": "dataset",
                                            "meta_data": (x_meta, y_meta),
                                            "meta_batch_size": 8}),
        "mwat_meta_dataset": (km.MWATModel, {"meta_source": "dataset",
                                             "meta_data": meta_batches}),
        "pgd_at": (km.PGDATModel, {}),
        "trades": (km.TRADESModel, {"attack": shifted_pgd()}),
        "mart": (km.MARTModel, {}),
        "mail": (km.MAILModel, {}),
        "gairat": (km.GAIRATModel, {}),
        "wmmr": (km.WMMRModel, {}),
        "mwn": (km.MWNModel, {"meta_source": "split"}),
        # Random starts: replicas draw their own noise, so only "trains" is checked.
        "mwat_random_start": (km.MWATModel, {"attack": km.attacks.PGD(
            eps=0.2, step_size=0.1, num_steps=2), "meta_data": (x_meta, y_meta)}),
    }


def build(model_class, options, jit_compile="auto"):
    """The model of a configuration, compiled, with seeded initial weights."""
    import keras

    import keras_mwat as km

    keras.utils.set_random_seed(0)
    classifier = km.zoo.mlp(input_shape=(FEATURES,), num_classes=NUM_CLASSES,
                            hidden_units=(16,))
    extra = {"attack": deterministic_pgd()}
    if issubclass(model_class, km.MWATModel):
        extra["meta_optimizer"] = keras.optimizers.Adam(1e-2)
    model = model_class(classifier, seed=0, **{**extra, **options})
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), jit_compile=jit_compile)
    return model


def weight_net_weights(model) -> list:
    net = getattr(model, "weight_net", None)
    return [] if net is None else [np.array(w) for w in net.get_weights()]


def snapshot(model, history=None) -> dict:
    """Classifier and weight-network weights, and the logged metrics of ``history``."""
    result = {f"classifier_{i}": np.array(w)
              for i, w in enumerate(model.classifier.get_weights())}
    result.update({f"weight_net_{i}": w for i, w in enumerate(weight_net_weights(model))})
    for key in LOGGED if history is not None else ():
        if key in history.history:
            result[f"log_{key}"] = np.array(history.history[key])
    return result


def train(model, x, y, validation=None):
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    if validation is not None:
        validation = tf.data.Dataset.from_tensor_slices(validation).batch(GLOBAL_BATCH)
    return model.fit(data, validation_data=validation, epochs=1, shuffle=False, verbose=0)


def probe_replicas(strategy) -> dict:
    """Per-replica values of the replica helpers, computed in a replicated step."""
    import keras

    from keras_mwat.methods import replicas

    with strategy.scope():
        generator = keras.random.SeedGenerator(3)

    @tf.function
    def step():
        def fn():
            offset, total = replicas.global_offset(tf.constant(GLOBAL_BATCH // 2))
            seed = replicas.replica_seed(generator)
            return offset, total, tf.cast(seed, tf.int64)

        return strategy.run(fn)

    offsets, totals, seeds = (strategy.experimental_local_results(v) for v in step())
    return {"probe_offsets": np.array([int(o) for o in offsets]),
            "probe_totals": np.array([int(t) for t in totals]),
            "probe_seeds": np.stack([s.numpy() for s in seeds])}


def xla_error(strategy) -> str:
    """The message of compiling a model with jit_compile=True under ``strategy``."""
    import keras_mwat as km

    try:
        with strategy.scope():
            build(km.PGDATModel, {}, jit_compile=True)
    except ValueError as error:
        return str(error)
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategy", choices=("mirrored", "multiworker"), required=True)
    parser.add_argument("--configs", required=True, help="comma-separated configuration names")
    args = parser.parse_args(argv)

    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        chief = True
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        chief = strategy.cluster_resolver.task_id == 0
    tf.get_logger().setLevel("ERROR")

    x, y, x_meta, y_meta = make_data()
    table = configurations(x_meta, y_meta)
    results = {"num_replicas": np.array(strategy.num_replicas_in_sync),
               "xla_error": np.array(xla_error(strategy)),
               **probe_replicas(strategy)}
    for name in args.configs.split(","):
        model_class, options = table[name]
        validation = (x_meta, y_meta) if name in VALIDATED else None
        single = build(model_class, options)
        initial = single.get_weights()
        results.update({f"{name}/initial/{k}": v for k, v in snapshot(single).items()})
        if chief:  # the single-device reference
            history = train(single, x, y, validation)
            results.update({f"{name}/single/{k}": v
                            for k, v in snapshot(single, history).items()})

        with strategy.scope():
            model = build(model_class, options)
        model.set_weights(initial)
        # Keras distributes each global batch: every replica (every worker's, sharded by
        # data under MultiWorkerMirroredStrategy) gets a contiguous slice, in replica order.
        history = train(model, x, y, validation)
        results.update({f"{name}/distributed/{k}": v
                        for k, v in snapshot(model, history).items()})
        print(f"{name}: done", flush=True)
    if chief:
        np.savez(args.out, **results)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
