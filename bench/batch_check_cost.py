"""Cost of the per-batch input checks (``compile(check_batches=True)``) on a PGD-AT step.

Two ``PGDATModel`` s on the same classifier weights, one compiled with the checks and one
without, take PGD-10 training steps (batch 128) on ``km.zoo.tiny_cnn`` and
``km.zoo.small_cnn`` (28x28x1, 10 classes). Timing rules of ``bench/step_overhead.py`` (a
shared, noisy 2-core machine): one intra-op and one inter-op thread, oneDNN off, process CPU
time, the two variants interleaved round by round (alternating which goes first), the
per-round ratio "with / without" pooled; medians with the min-max spread. The checks alone
(``validation.check_batch_in_graph`` on the batch, in a ``tf.function``) are timed the same
way: their cost over the step is the sharper number, the step ratio the end-to-end one.

Target: the checks cost at most 2 % of a PGD-AT step.

Run: ``.venv/bin/python bench/batch_check_cost.py`` (about 5 minutes; ``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import keras_mwat as km  # noqa: E402
from keras_mwat import validation  # noqa: E402

BATCH = 128
TARGET = 0.02


def classifier(model: str):
    keras.utils.set_random_seed(0)
    build = {"tiny_cnn": km.zoo.tiny_cnn, "small_cnn": km.zoo.small_cnn}[model]
    return build(input_shape=(28, 28, 1), num_classes=10)


def train_step(model: str, weights, check: bool):
    clf = classifier(model)
    if weights is not None:
        clf.set_weights(weights)
    attack = km.attacks.PGD(eps=0.3, step_size=0.03, num_steps=10, value_range=(0.0, 1.0))
    wrapper = km.PGDATModel(clf, attack=attack, seed=0)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=False,
                    check_batches=check)
    return tf.function(wrapper.train_step), clf.get_weights()


def check_only(model: str):
    def run(data):
        x, y, _ = validation.check_batch_in_graph(
            data[0], data[1], num_classes=10, value_range=(0.0, 1.0),
            where=lambda: tf.constant("bench"))
        return tf.reduce_sum(x[:1]) + tf.cast(y[0], tf.float32)
    return tf.function(run)


def timed(step, data, count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        out = step(data)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
    return (time.process_time() - start) / count


def measure(model: str, rounds: int, repeats: int, check_repeats: int) -> dict:
    rng = np.random.default_rng(0)
    data = (tf.constant(rng.uniform(size=(BATCH, 28, 28, 1)).astype("float32")),
            tf.constant(rng.integers(0, 10, size=BATCH).astype("int64")))
    without, weights = train_step(model, None, check=False)
    with_checks, _ = train_step(model, weights, check=True)
    checks = check_only(model)
    variants = {"without": without, "with": with_checks, "checks": checks}
    for step in variants.values():  # trace and warm up
        timed(step, data, 2)
    times = {name: [] for name in variants}
    for r in range(rounds):
        order = ["without", "with"] if r % 2 == 0 else ["with", "without"]
        for name in order:
            times[name].append(timed(variants[name], data, repeats))
        times["checks"].append(timed(checks, data, check_repeats))
    ratio = np.array(times["with"]) / np.array(times["without"]) - 1.0
    share = np.array(times["checks"]) / np.array(times["without"])
    return {"times": times, "step_overhead": ratio.tolist(), "check_share": share.tolist()}


def stats(values) -> dict:
    values = np.asarray(values, float)
    return {"median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_cnn,small_cnn")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=6, help="steps per variant and round")
    parser.add_argument("--check-repeats", type=int, default=200)
    parser.add_argument("--json", default=None, help="write the raw times here")
    args = parser.parse_args()
    results = {}
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {platform.processor() or 'CPU'}, "
          f"1 thread, oneDNN {'off' if os.environ['TF_ENABLE_ONEDNN_OPTS'] == '0' else 'on'}, "
          f"batch {BATCH}, PGD-10, {args.rounds} rounds x {args.repeats} steps")
    print("| model | PGD-AT step, no checks (ms) | step with checks (ms) | "
          "step overhead, median [min, max] | checks alone (ms) | checks / step, median "
          "[min, max] | target <= 2 % |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        result = measure(model, args.rounds, args.repeats, args.check_repeats)
        results[model] = result
        plain, checked = stats(result["times"]["without"]), stats(result["times"]["with"])
        alone = stats(result["times"]["checks"])
        over, share = stats(result["step_overhead"]), stats(result["check_share"])
        met = "met" if share["median"] <= TARGET and over["median"] <= TARGET else "missed"
        print(f"| {model} | {1e3 * plain['median']:.1f} | {1e3 * checked['median']:.1f} | "
              f"{100 * over['median']:+.2f} % [{100 * over['min']:+.2f}, "
              f"{100 * over['max']:+.2f}] | {1e3 * alone['median']:.3f} | "
              f"{100 * share['median']:.3f} % [{100 * share['min']:.3f}, "
              f"{100 * share['max']:.3f}] | {met} |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
