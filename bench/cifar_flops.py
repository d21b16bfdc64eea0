"""FLOPs of one training step per CIFAR row of the paper, and the time per epoch they imply.

No training: the script builds each row's classifier (``km.zoo.cifar_small_cnn`` and
``km.zoo.wide_resnet``, WRN-34-10 = GAIRAT's "WRN-32-10") and counts the floating-point
operations of one forward pass per image twice:

1. **exact layer count**: ``2 * MACs`` (+ bias adds) of every ``Conv2D`` and ``Dense``
   layer, from the layers' shapes;
2. **TF graph profiler**: ``tf.compat.v1.profiler`` on the frozen graph of the model's
   forward pass for one image (it also counts batch norm, ReLU, additions and pooling).

The two must agree to within 2 % (convolutions and dense layers are nearly all the work);
the script fails otherwise. A training step is then priced in forward passes per image
(``k`` = PGD steps of the training attack, 10):

- PGD-AT, GAIRAT, WMMR, MAIL: ``3 (k + 1)`` forward passes (``k`` attack steps and one
  training step, each a forward and a backward pass, a backward costing about two
  forwards); the weights cost nothing measurable.
- TRADES (and MWAT-TRADES's base): ``3 k + 1 + 6``: the ``k`` KL attack steps, the clean
  forward that is the KL target, and forward + backward on both the clean and the
  adversarial batch.
- MWAT (the paper's BiLAW), MWAT-TRADES, non-parametric: the base step times 2.13, the
  overhead of the paper's configuration over a PGD-10 AT step measured on CPU in
  docs/benchmarks.md ("The paper's configuration": 2.126 and 2.133). That it transfers to
  a GPU and to the TRADES base and the non-parametric variant is an assumption.

An epoch is 45,000 training images (the first 90 % of CIFAR's 50,000; 44,000 for the
bilevel methods, which hold out a 1,000-image meta set) plus the best-checkpoint
selection, PGD-10 on the 5,000 validation images (``3 k + 2`` forwards per image).
Time per epoch = FLOPs per epoch / sustained throughput, for an assumed GPU (see
``GPUS``). Usage::

    python bench/cifar_flops.py                 # prints the Markdown tables
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mwat as km  # noqa: E402

K = 10  # PGD steps of the training attack (paper)
MWAT_OVERHEAD = 2.13  # paper's BiLAW step / PGD-10 AT step, docs/benchmarks.md
TRAIN_IMAGES, META_IMAGES, VALIDATION_IMAGES = 45_000, 1_000, 5_000

#: Forward passes per training image, and whether the method holds out a meta set.
METHOD_COST = {
    "pgd_at": (3 * (K + 1), False),
    "trades": (3 * K + 1 + 6, False),
    "gairat": (3 * (K + 1), False),
    "wmmr": (3 * (K + 1), False),
    "mail": (3 * (K + 1), False),
    "mwat_nonparametric": (MWAT_OVERHEAD * 3 * (K + 1), True),
    "mwat": (MWAT_OVERHEAD * 3 * (K + 1), True),
    "mwat_trades": (MWAT_OVERHEAD * (3 * K + 1 + 6), True),
}

#: name: (peak dense fp16 tensor-core TFLOPS with fp32 accumulation, sustained fraction
#: assumed for the WRN, for the small-CNN).
GPUS = {
    "A100 (SXM, 40/80 GB)": (312.0, 0.20, 0.10),
    "RTX 2080 Ti (the paper's)": (53.8, 0.20, 0.10),
}

#: Rows of the paper's Tables 2 and 3: (label, builder, kwargs, classes, methods).
TABLE2 = ("pgd_at", "trades", "gairat", "wmmr", "mail", "mwat_nonparametric", "mwat",
          "mwat_trades")
ROWS = (
    ("CIFAR-10 small-CNN (2/255 and 8/255)", "cifar_small_cnn", {}, 10, TABLE2),
    ("CIFAR-10 WRN-34-10 (2/255 and 8/255)", "wide_resnet", {}, 10, TABLE2),
    ("CIFAR-100 WRN-34-10 (8/255)", "wide_resnet", {}, 100,
     ("mwat_trades", "pgd_at", "trades", "trades", "gairat", "wmmr", "mail")),
)


def layer_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass per image in ``model``'s Conv2D and Dense layers.

    ``2 * MACs`` plus one add per output for a bias.

    Example:

    ```python
    layer_flops(km.zoo.cifar_small_cnn())   # 0.28e9 per 32x32x3 image
    ```
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * h * w * kh * kw * c_in * c_out + (h * w * c_out if layer.use_bias else 0)
        elif isinstance(layer, keras.layers.Dense):
            n_in, n_out = layer.kernel.shape
            total += 2 * n_in * n_out + (n_out if layer.use_bias else 0)
    return int(total)


def profiler_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass (one image, inference mode) from TF's graph profiler.

    Example:

    ```python
    profiler_flops(km.zoo.cifar_small_cnn())
    ```
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, cmd="op", options=options)
    return int(profile.total_float_ops)


def _build(builder: str, kwargs: dict, classes: int) -> keras.Model:
    keras.backend.clear_session()
    return getattr(km.zoo, builder)(input_shape=(32, 32, 3), num_classes=classes, **kwargs)


def epoch_flops(forward: float, method: str) -> float:
    """FLOPs of one epoch of ``method`` (training + PGD-10 best-checkpoint selection).

    Example:

    ```python
    epoch_flops(13.1e9, "pgd_at")
    ```
    """
    per_image, bilevel = METHOD_COST[method]
    train = TRAIN_IMAGES - (META_IMAGES if bilevel else 0)
    return forward * (per_image * train + (3 * K + 2) * VALIDATION_IMAGES)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print("| model | classes | parameters | forward GFLOPs per image: layer count | TF profiler "
          "(all ops) | layer count / profiler |")
    print("|---|---|---|---|---|---|")
    forwards = {}
    for label, builder, kwargs, classes, _ in ROWS:
        key = (builder, classes)
        if key in forwards:
            continue
        model = _build(builder, kwargs, classes)
        counted, profiled = layer_flops(model), profiler_flops(model)
        ratio = counted / profiled
        if not 0.98 <= ratio <= 1.0 + 1e-9:
            raise SystemExit(f"{label}: layer count {counted} vs profiler {profiled}")
        forwards[key] = counted
        trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        print(f"| {model.name} | {classes} | {trainable:,} | {counted / 1e9:.3f} | "
              f"{profiled / 1e9:.3f} | {ratio:.4f} |")
    for gpu, (peak, wrn_fraction, small_fraction) in GPUS.items():
        print(f"\n{gpu}: peak {peak:g} TFLOPS (fp16 tensor cores, fp32 accumulation); "
              f"sustained assumed {wrn_fraction:.0%} on the WRN ({peak * wrn_fraction:.1f} "
              f"TFLOPS), {small_fraction:.0%} on the small-CNN "
              f"({peak * small_fraction:.1f} TFLOPS)\n")
        print("| row | " + " | ".join(TABLE2) + " | sum of the row's methods |")
        print("|---|" + "---|" * (len(TABLE2) + 1))
        for label, builder, _, classes, methods in ROWS:
            sustained = peak * 1e12 * (small_fraction if builder == "cifar_small_cnn"
                                       else wrn_fraction)
            forward = forwards[(builder, classes)]
            minutes = {m: epoch_flops(forward, m) / sustained / 60 for m in METHOD_COST}
            cells = [f"{minutes[m]:.1f}" if m in methods else "–" for m in TABLE2]
            total = sum(minutes[m] for m in methods)
            print(f"| {label} | " + " | ".join(cells) + f" | {total:.0f} min/epoch, "
                  f"{total * 100 / 60:.0f} h for 100 epochs |")


if __name__ == "__main__":
    main()
