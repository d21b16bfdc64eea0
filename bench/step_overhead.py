"""Cost of one training step: plain, PGD-10 AT, TRADES and MWAT, on CNNs and a small ResNet.

One command measures, for each model (``km.zoo.small_cnn`` on 28x28x1, ``km.zoo.small_resnet``
on 32x32x3; batch 128, PGD-10):

* step time of every variant (plain Keras step, PGD-AT, TRADES, MWAT with
  ``meta_source="batch"`` and ``meta_objective="both"`` or ``"adversarial"``, each also with
  ``meta_update_every=4``; and ``hypergradient_mode="low_memory"``) and the ratios against
  the targets, next to the exact lower
  bound of each ratio (the passes any exact implementation must add, priced at this run's
  training forward + backward);
* unit costs (inference forward pass, one attack step, training forward + backward), from
  which the report counts the passes each step costs;
* the first call of each step (tracing, graph optimisation and one run);
* step time against the batch size (64, 128, 256) and the number of PGD steps (5, 10, 20);
* peak memory of each variant, each in a fresh process of its own (below), with TRADES's
  plus one copy of the parameters (θ') as the bound for MWAT's while it reuses the recorded
  forward (both hold two recorded training forwards at once).

Timing rules (a shared, noisy 2-core machine): one intra-op and one inter-op thread;
process CPU time per step; the variants interleaved round by round in a rotating order, so
that the machine's noise hits them alike; several fresh worker processes (step times vary
from process to process), whose per-round ratios are pooled; medians with the interquartile
range and the min–max spread. ``TF_ENABLE_ONEDNN_OPTS=0`` (oneDNN off) is the reported
setting: with oneDNN on, fresh processes differed by up to ~40% for one variant.

Peak memory, in one fresh process per variant and sample: the steps run under TensorFlow's
profiler, whose trace records every allocation and deallocation of the CPU allocator with the
bytes the op requested; the peak of the bytes requested by allocations made during the steps
and not yet freed is the step's working memory (activations, gradients, temporaries; not the
variables, the Python heap or the TensorFlow runtime), exact to the byte. The allocator's own
peak (``tf.config.experimental.get_memory_info("CPU:0")["peak"]``, BFC allocator, which needs
``TF_CPU_ALLOCATOR_USE_BFC=true`` with oneDNN off) is kept beside it: it counts the chunks the
allocator handed out, and a chunk may be up to twice the request (a 12.3 MB activation served
from a free 16 MB chunk), which made that measure swing by up to 0.2 of the ratio from
process to process. The resident-set high-water mark (``ru_maxrss``) is no use here: tracing
the step sets it, and it does not grow over the steps (it is kept in the raw ``--json``
output only).

The paper's configuration (``--variants`` with ``mwat_paper``, ``mwat_paper_k2``,
``mwat_paper_k4``): ``MWATModel(clf, meta_data=(x_meta, y_meta))`` with the defaults, the
held-out meta set ``--meta-size`` uniform random inputs in [0, 1], each step's meta batch
(128) attacked by PGD-10 against the pseudo model; with ``meta_update_every=2`` or ``4``. Its
exact lower bound adds to the batch variant's passes one PGD-10 attack of the meta batch,
priced as the attack inside a PGD-AT step (the lower of the ``attack`` unit and
``pgd_at − fwd_bwd − forward``). ``--models`` also takes ``tiny_cnn`` (``km.zoo.tiny_cnn``, the
paper's MNIST model). A run with a paper variant writes only the section "The paper's
configuration (held-out meta set)" of ``--out`` (between its markers, or below the notes
marker the first time); the rest of the file is kept.

Run: ``.venv/bin/python bench/step_overhead.py`` (about 30 minutes; ``--help`` for the knobs).
``--update-memory RAW.json`` measures the memory again into a saved run, keeping its timings.
The paper's configuration (about 20 minutes)::

    python bench/step_overhead.py --models tiny_cnn,small_cnn \\
        --variants plain,pgd_at,mwat_adv_lowmem,mwat_paper,mwat_paper_k2,mwat_paper_k4 \\
        --memory-variants pgd_at,mwat_paper --no-scaling --rounds 10 \\
        --json bench/step_overhead_paper.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import keras_mwat as km  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTES_MARKER = "<!-- notes: kept when the benchmark is re-run -->"
#: The generated section of a run with the paper variants (replaced when such a run renders).
PAPER_MARKERS = ("<!-- step_overhead paper: generated, replaced when re-run -->",
                 "<!-- /step_overhead paper -->")
PAPER_HEADING = "## The paper's configuration (held-out meta set)"

MODELS = {
    "cnn": "small CNN (`km.zoo.small_cnn()`, 28x28x1, the embedded MNIST digits)",
    "resnet": "small ResNet (`km.zoo.small_resnet()`, 32x32x3, uniform random images)",
    "tiny_cnn": "tiny CNN (`km.zoo.tiny_cnn()`, 28x28x1, the paper's MNIST model; the "
                "embedded MNIST digits)",
}
#: Other names accepted by ``--models`` (the zoo's function names).
MODEL_ALIASES = {"small_cnn": "cnn", "small_resnet": "resnet"}
#: The variants of the default run (the tables at the top of docs/benchmarks.md).
VARIANTS = ("plain", "pgd_at", "trades", "mwat", "mwat_k4", "mwat_adv", "mwat_adv_k4",
            "mwat_adv_lowmem")
#: The paper's configuration: a held-out meta set, each meta batch attacked with PGD-10.
PAPER_VARIANTS = ("mwat_paper", "mwat_paper_k2", "mwat_paper_k4")
ALL_VARIANTS = (*VARIANTS, *PAPER_VARIANTS)
#: ``meta_update_every`` of the variants that skip meta updates (a sample holds one cycle).
UPDATE_EVERY = {"mwat_k4": 4, "mwat_adv_k4": 4, "mwat_paper_k2": 2, "mwat_paper_k4": 4}
UNITS = ("forward", "attack", "fwd_bwd")
DESCRIPTIONS = {
    "plain": "plain Keras step (forward + backward + SGD)",
    "pgd_at": "PGD-10 AT",
    "trades": "TRADES (beta 6), PGD-10 on the KL",
    "mwat": 'MWAT, meta_source="batch", meta_objective="both", hypergradient_mode="reverse"',
    "mwat_k4": 'MWAT, meta_objective="both", meta_update_every=4, "reverse"',
    "mwat_adv": 'MWAT, meta_source="batch", meta_objective="adversarial", "reverse"',
    "mwat_adv_k4": 'MWAT, meta_objective="adversarial", meta_update_every=4, "reverse"',
    "mwat_adv_lowmem": 'MWAT, meta_source="batch", meta_objective="adversarial", '
                       'hypergradient_mode="low_memory"',
    "mwat_paper": "MWAT (paper): `MWATModel(clf, meta_data=(x_meta, y_meta))`, the defaults "
                  "(held-out meta set, meta batch 128 attacked by PGD-10 at θ̃, low_memory)",
    "mwat_paper_k2": "MWAT (paper), meta_update_every=2",
    "mwat_paper_k4": "MWAT (paper), meta_update_every=4",
    "forward": "unit: inference forward pass",
    "attack": "unit: the PGD-10 attack alone (10 x inference forward + input gradient)",
    "fwd_bwd": "unit: training forward + parameter gradient (no optimizer)",
}
# (label, numerator, denominator, target or None, exact lower bound or None). The bound is
# (training forward + backward passes, backward passes) that any exact implementation must
# add to a PGD-10 AT step, priced at this run's `fwd_bwd` and `fwd_bwd - forward`:
# * MWAT: per meta batch a training forward + backward at θ' (2 batches for "both"); the
#   inner backward (θ' is built from Σ c_i ∇ℓ_i: a backward pass of the recorded forward);
#   and the products J·v = (<∇ℓ_i, v>)_i, whose tangent pass multiplies, layer by layer, the
#   weight direction with the input and the weights with the input tangent: the products
#   of a backward pass. `meta_update_every=4` divides the meta part by 4.
# * MWAT low_memory: the same passes in another order (the second inner backward, recorded
#   for J·v, is linear in its output gradients: its values are never needed, and the graph
#   optimiser drops it).
# * MWAT (paper): the same as MWAT's adversarial meta loss, plus the PGD-10 attack of the
#   meta batch (128 drawn from the held-out set, at θ̃: nothing of the training batch's
#   attack can be reused), priced as the attack inside a PGD-AT step (third number): the
#   lower of this run's `attack` unit and `pgd_at − fwd_bwd − forward` (the standalone
#   unit costs more than the same attack inside a step: 619 against at most 581 ms on the
#   small CNN in the run of the paper's configuration).
# * TRADES: the recorded forward + backward on the clean inputs.
RATIOS = (
    ("MWAT / PGD-10 AT (batch, adversarial, low_memory)", "mwat_adv_lowmem",
     "pgd_at", 1.25, (1.0, 2.0, 0.0)),
    ("MWAT / PGD-10 AT (batch, adversarial, reverse)", "mwat_adv", "pgd_at", 1.25,
     (1.0, 2.0, 0.0)),
    ("MWAT / PGD-10 AT (batch, both, reverse)", "mwat", "pgd_at", 1.25, (2.0, 2.0, 0.0)),
    ("MWAT k=4 / PGD-10 AT (adversarial, reverse)", "mwat_adv_k4", "pgd_at", 1.1,
     (0.25, 0.5, 0.0)),
    ("MWAT k=4 / PGD-10 AT (both, reverse)", "mwat_k4", "pgd_at", 1.1, (0.5, 0.5, 0.0)),
    ("PGD-10 AT / plain", "pgd_at", "plain", 11.0, None),
    ("TRADES / PGD-10 AT", "trades", "pgd_at", 1.15, (1.0, 0.0, 0.0)),
    ("MWAT (paper) / PGD-10 AT (held-out meta set, PGD-10 meta attack)", "mwat_paper",
     "pgd_at", 2.1, (1.0, 2.0, 1.0)),
    ("MWAT (paper) k=2 / PGD-10 AT", "mwat_paper_k2", "pgd_at", None, (0.5, 1.0, 0.5)),
    ("MWAT (paper) k=4 / PGD-10 AT", "mwat_paper_k4", "pgd_at", 1.3, (0.25, 0.5, 0.25)),
    ("MWAT (paper) / MWAT (batch, adversarial, low_memory)", "mwat_paper",
     "mwat_adv_lowmem", None, None),
)
BATCHES = (64, 128, 256)
PGD_STEPS = (5, 10, 20)
MEMORY_TARGET = 1.5
SETTINGS = ("models", "processes", "rounds", "resnet_processes", "resnet_rounds", "repeats",
            "scaling_processes", "scaling_rounds", "memory_processes", "onednn", "batch_size",
            "seed", "variants", "memory_variants", "meta_size")
#: Settings absent from runs saved before they existed: their values then.
SETTING_DEFAULTS = {"variants": list(VARIANTS), "memory_variants": list(VARIANTS),
                    "meta_size": 1000}


# ------------------------------------------------------------------- building steps
def image_shape(model: str) -> tuple:
    return (32, 32, 3) if model == "resnet" else (28, 28, 1)


def batch(model: str, batch_size: int, seed: int):
    if model != "resnet":
        data = km.data.load_embedded(seed=seed)
        repeats = -(-batch_size // len(data.x_train))
        x = np.concatenate([data.x_train] * repeats)[:batch_size]
        y = np.concatenate([data.y_train] * repeats)[:batch_size]
        return tf.constant(x, tf.float32), tf.constant(y.astype("int32"))
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch_size, 32, 32, 3)).astype("float32")
    return tf.constant(x), tf.constant(rng.integers(0, 10, batch_size).astype("int32"))


def classifier(model: str, seed: int):
    keras.utils.set_random_seed(seed)
    if model == "cnn":
        return km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10)
    if model == "tiny_cnn":
        return km.zoo.tiny_cnn(input_shape=(28, 28, 1), num_classes=10)
    return km.zoo.small_resnet(input_shape=(32, 32, 3), num_classes=10)


def attack(model: str, num_steps: int = 10):
    if model != "resnet":
        return km.attacks.PGD(eps=0.3, step_size=0.03, num_steps=num_steps)
    return km.attacks.PGD(eps=8 / 255, step_size=2 / 255, num_steps=num_steps)


def sgd():
    return keras.optimizers.SGD(0.01, momentum=0.9)


def meta_set(model: str, size: int, seed: int) -> tuple:
    """The held-out meta set of the paper variants: ``size`` uniform random inputs in [0, 1].

    Random inputs cost what images cost (no data-dependent kernels); they are drawn from
    another stream than the training batch's.
    """
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(0.0, 1.0, (size, *image_shape(model))).astype("float32")
    return x, rng.integers(0, 10, size).astype("int32")


def build_step(name: str, model: str, seed: int, num_steps: int = 10, meta_size: int = 1000):
    """A traced-on-first-call function running one step of variant ``name``."""
    if name == "plain":
        net = classifier(model, seed)
        net.compile(optimizer=sgd(),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return tf.function(net.train_step)
    if name in UNITS:
        net = classifier(model, seed)
        pgd = attack(model, 10)
        values = [tf.convert_to_tensor(v) for v in net.trainable_variables]
        fixed = [tf.convert_to_tensor(v) for v in net.non_trainable_variables]

        def unit(data):
            x, y = data
            if name == "forward":
                return {"loss": tf.reduce_sum(net(x, training=False))}
            if name == "attack":
                return {"loss": tf.reduce_sum(pgd.perturb(lambda z: net(z, training=False),
                                                          x, y))}
            with tf.GradientTape() as tape:
                tape.watch(values)
                logits, _ = net.stateless_call(values, fixed, x, training=True)
                loss = tf.reduce_mean(km.losses.cross_entropy(y, logits))
            gradients = tape.gradient(loss, values)
            return {"loss": loss, "gradient": tf.add_n([tf.reduce_sum(g) for g in gradients])}

        return tf.function(unit)
    net = classifier(model, seed)
    pgd = attack(model, num_steps)
    if name == "pgd_at":
        wrapper = km.PGDATModel(net, attack=pgd, seed=seed)
    elif name == "trades":
        wrapper = km.TRADESModel(net, attack=pgd, seed=seed)
    elif name in PAPER_VARIANTS:
        # The defaults are the paper's: only the meta set and the update period are given.
        wrapper = km.MWATModel(net, attack=pgd, seed=seed,
                               meta_data=meta_set(model, meta_size, seed),
                               look_ahead=km.LookAhead(update_every=UPDATE_EVERY.get(name, 1)))
    else:
        reverse = {"hypergradient_mode": "reverse"}
        options = {
            "mwat": {"meta_objective": "both", **reverse},
            "mwat_k4": {"meta_objective": "both", "meta_update_every": 4, **reverse},
            "mwat_adv": {"meta_objective": "adversarial", **reverse},
            "mwat_adv_k4": {"meta_objective": "adversarial", "meta_update_every": 4, **reverse},
            "mwat_adv_lowmem": {"meta_objective": "adversarial",
                                "hypergradient_mode": "low_memory"},
        }[name]
        grouped = km.methods.mwat_options.group_flat_options(
            {"meta_source": "batch", **options}, warn=False)  # the flat names of the table
        wrapper = km.MWATModel(net, attack=pgd, seed=seed, **grouped)
    wrapper.compile(optimizer=sgd())
    return tf.function(wrapper.train_step)


def steps_per_sample(name: str, repeats: int) -> int:
    """Steps timed together: a multiple of k for ``meta_update_every=k`` (whole cycles)."""
    every = UPDATE_EVERY.get(name, 1)
    return every * -(-repeats // every)


def first_call(step, data) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    float(step(data)["loss"])
    return time.process_time() - cpu, time.perf_counter() - wall


def time_steps(step, data, count: int) -> float:
    """CPU seconds per step over ``count`` consecutive steps."""
    start = time.process_time()
    for _ in range(count):
        logs = step(data)
    float(logs["loss"])  # wait for the result
    return (time.process_time() - start) / count


def interleave(steps: dict, rounds: int, repeats: int) -> dict:
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            step, data, count = steps[name]
            times[name].append(time_steps(step, data, count))
    return times


def warm_up(model: str, seed: int) -> None:
    """Pays the process's one-off costs (kernel registration, first trace) before measuring."""
    step = build_step("plain", model, seed)
    step(batch(model, 8, seed))


# ----------------------------------------------------------------------- workers
def worker_main(args) -> dict:
    warm_up(args.model, args.seed)
    data = batch(args.model, args.batch_size, args.seed)
    steps, first = {}, {}
    for name in (*args.variants, *UNITS):
        step = build_step(name, args.model, args.seed, meta_size=args.meta_size)
        first[name] = first_call(step, data)
        for _ in range(steps_per_sample(name, 2)):  # settle (k=4: one update cycle)
            float(step(data)["loss"])
        steps[name] = (step, data, steps_per_sample(name, args.repeats))
    return {"times": interleave(steps, args.rounds, args.repeats), "first_call": first}


def scaling_keys():
    keys = [(name, b, 10) for b in BATCHES for name in ("plain", "pgd_at", "mwat")]
    keys += [(name, 128, k) for k in PGD_STEPS if k != 10 for name in ("pgd_at", "mwat")]
    return keys


def worker_scaling(args) -> dict:
    warm_up(args.model, args.seed)
    steps = {}
    for name, size, k in scaling_keys():
        step = build_step(name, args.model, args.seed, num_steps=k)
        data = batch(args.model, size, args.seed)
        float(step(data)["loss"])
        steps[f"{name}|{size}|{k}"] = (step, data, args.repeats)
    return {"times": interleave(steps, args.rounds, args.repeats)}


def requested_peak(trace_dir: str) -> int:
    """Peak bytes requested and not yet freed by the allocations in a profiler trace.

    Allocations made before the trace started are not counted, nor are their frees, so the
    result is the working memory of what ran inside the trace.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    events = []
    for path in Path(trace_dir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            kinds = {key: meta.name for key, meta in plane.event_metadata.items()}
            stat_names = {key: meta.name for key, meta in plane.stat_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    kind = kinds.get(event.metadata_id)
                    if kind not in ("MemoryAllocation", "MemoryDeallocation"):
                        continue
                    stats = {stat_names[stat.metadata_id]: stat.int64_value or stat.uint64_value
                             for stat in event.stats}
                    events.append((line.timestamp_ns * 1000 + event.offset_ps,
                                   kind == "MemoryAllocation", stats["addr"],
                                   stats["requested_bytes"]))
    if not events:
        raise RuntimeError(f"no allocation events in the profiler trace under {trace_dir}")
    live, current, peak = {}, 0, 0
    for _, allocation, address, size in sorted(events):
        if allocation:
            live[address] = size
            current += size
            peak = max(peak, current)
        elif address in live:
            current -= live.pop(address)
    return peak


def worker_memory(args) -> dict:
    data = batch(args.model, args.batch_size, args.seed)
    step = build_step(args.variant, args.model, args.seed, meta_size=args.meta_size)
    step.get_concrete_function(data)  # trace first: graph building is not step memory
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        for _ in range(steps_per_sample(args.variant, 2)):
            float(step(data)["loss"])
        tf.profiler.experimental.stop()
        requested = requested_peak(trace_dir)
    info = tf.config.experimental.get_memory_info("CPU:0")
    parameters = sum(int(np.prod(v.shape)) * 4
                     for v in classifier(args.model, args.seed).trainable_variables)
    return {"requested_peak": requested, "peak": info["peak"] - before, "resident": before,
            "parameter_bytes": parameters,
            "rss_high_water": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


# ------------------------------------------------------------------------ driver
def spawn(args, kind: str, model: str, extra: list, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--model", model, "--seed",
               str(args.seed), "--batch-size", str(args.batch_size), "--meta-size",
               str(args.meta_size), "--variants", ",".join(args.variants), *extra]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(args) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if args.onednn == "on" else "0")
    results = {m: {"main": [], "scaling": [], "memory": {}} for m in args.models}
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    for index in range(max(processes_of(args, m) for m in args.models)):
        for model in args.models:
            if index < processes_of(args, model):
                results[model]["main"].append(spawn(
                    args, "main", model, ["--rounds", str(rounds_of(args, model)),
                                          "--repeats", str(args.repeats)], env))
                log(f"{model} main process {index + 1} done", started)
    load.append(os.getloadavg()[0])
    if not args.no_scaling:
        for index in range(args.scaling_processes):
            for model in args.models:
                results[model]["scaling"].append(spawn(
                    args, "scaling", model, ["--rounds", str(args.scaling_rounds),
                                             "--repeats", "1"], env))
                log(f"{model} scaling process {index + 1} done", started)
        load.append(os.getloadavg()[0])
    if not args.no_memory:
        for model in args.models:
            results[model]["memory"] = measure_memory(args, model, env, started)
        load.append(os.getloadavg()[0])
    return {"models": results, "wall_seconds": time.perf_counter() - started,
            "load": load}


def measure_memory(args, model: str, env: dict, started: float) -> dict:
    """Peak memory of every variant: ``args.memory_processes`` fresh processes each."""
    memory_env = dict(env, TF_CPU_ALLOCATOR_USE_BFC="true")
    memory = {}
    for index in range(args.memory_processes):
        for name in args.memory_variants:
            memory.setdefault(name, []).append(spawn(args, "memory", model,
                                                     ["--variant", name], memory_env))
        log(f"{model} memory processes {index + 1} done", started)
    return memory


def processes_of(args, model: str) -> int:
    """Fresh processes of the main comparison: the CNNs' setting or the ResNet's."""
    return args.resnet_processes if model == "resnet" else args.processes


def rounds_of(args, model: str) -> int:
    return args.resnet_rounds if model == "resnet" else args.rounds


def log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.0f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ report
def stats(values) -> tuple:
    values = np.asarray(values, float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return median, q1, q3, values.min(), values.max()


def pooled(main: list, name: str) -> np.ndarray:
    return np.concatenate([np.asarray(run["times"][name]) for run in main])


def pooled_ratio(main: list, a: str, b: str) -> np.ndarray:
    return np.concatenate([np.asarray(run["times"][a]) / np.asarray(run["times"][b])
                           for run in main])


#: How far a measured ratio may fall below its estimated bound: the bound prices passes at
#: unit medians, and in the run of 2026-11-25 measured ratios fell up to 0.037 below it.
BOUND_PRECISION = 0.03


def verdict(value: float, target: float | None, bound: float | None = None) -> str:
    if target is None:
        return "–"
    if value <= target:
        return "met"
    if bound is not None and bound > target + BOUND_PRECISION:
        return "**not met**: not reachable (bound > target)"
    if bound is not None and bound > target - BOUND_PRECISION:
        return "**not met**: the bound is at the target (within its precision)"
    return "**not met**"


def present(names, main: list) -> list:
    """The names measured in this run (older runs lack the newer variants)."""
    return [name for name in names if name in main[0]["times"]]


def model_section(model: str, result: dict, args, level: int = 2) -> list:
    """The tables of one model; ``level`` is the Markdown level of its heading."""
    main = result["main"]
    h2, h3 = "#" * level, "#" * (level + 1)
    variants = present(ALL_VARIANTS, main)
    lines = [f"{h2} {MODELS[model]}", ""]
    cycles = [f"{steps_per_sample(name, args.repeats)} for MWAT k={UPDATE_EVERY[name]}"
              for name in variants if name in UPDATE_EVERY]
    cycles = list(dict.fromkeys(cycles))  # k=4 appears twice in the default run
    lines += [f"{len(main)} fresh processes x {rounds_of(args, model)} rounds, pooled; a "
              f"sample is {args.repeats} consecutive steps"
              + (f" ({', '.join(cycles)}: one meta update in each)" if cycles else "") + ".",
              ""]

    lines += [f"{h3} Step time (CPU ms per step)", "",
              "| variant | median | IQR | min–max | first call CPU s | first call wall s |",
              "|---|---|---|---|---|---|"]
    for name in (*variants, *UNITS):
        median, q1, q3, low, high = stats(pooled(main, name) * 1e3)
        cpu = np.median([run["first_call"][name][0] for run in main])
        wall = np.median([run["first_call"][name][1] for run in main])
        lines.append(f"| `{name}`: {DESCRIPTIONS[name]} | {median:.1f} | {q1:.1f}–{q3:.1f} | "
                     f"{low:.1f}–{high:.1f} | {cpu:.2f} | {wall:.2f} |")

    lines += ["", f"{h3} Ratios (per round, side by side; pooled over processes)", "",
              "| ratio | median | IQR | min–max | exact lower bound | target | status |",
              "|---|---|---|---|---|---|---|"]
    pgd_ms = float(np.median(pooled(main, "pgd_at")))
    fwd_bwd_ms = float(np.median(pooled(main, "fwd_bwd")))
    backward_ms = fwd_bwd_ms - float(np.median(pooled(main, "forward")))
    attack_unit_ms = float(np.median(pooled(main, "attack")))
    attack_ms = min(attack_unit_ms, pgd_ms - fwd_bwd_ms - float(np.median(pooled(main, "forward"))))
    for label, a, b, target, passes in RATIOS:
        if a not in variants or b not in variants:
            continue
        median, q1, q3, low, high = stats(pooled_ratio(main, a, b))
        shown = "–" if target is None else f"≤ {target:g}"
        bound = None if passes is None else 1.0 + (
            passes[0] * fwd_bwd_ms + passes[1] * backward_ms + passes[2] * attack_ms) / pgd_ms
        lines.append(f"| {label} | {median:.3f} | {q1:.3f}–{q3:.3f} | {low:.3f}–{high:.3f} | "
                     f"{'–' if bound is None else f'{bound:.3f}'} | {shown} | "
                     f"{verdict(median, target, bound)} |")
    memory = result["memory"]
    if memory and "pgd_at" in memory:
        peak = {name: np.median([run["requested_peak"] for run in runs])
                for name, runs in memory.items()}
        # Bound with the forward reused: TRADES's peak (two recorded training forwards at
        # once, and one backward) plus the look-ahead parameters θ', which MWAT must hold too.
        # The paper's configuration has no such bound here (its meta batch is another batch).
        parameters = memory["pgd_at"][0]["parameter_bytes"]
        bound = (peak["trades"] + parameters) / peak["pgd_at"] if "trades" in peak else None
        for name, objective in (("mwat_adv_lowmem", "adversarial, low_memory"),
                                ("mwat_adv", "adversarial, reverse"),
                                ("mwat", "both, reverse"),
                                ("mwat_paper", "paper: held-out meta set, low_memory")):
            if name not in peak:
                continue
            value = peak[name] / peak["pgd_at"]
            reference = None if name in PAPER_VARIANTS else bound
            target = None if name in PAPER_VARIANTS else MEMORY_TARGET
            shown = "–" if reference is None else f"{reference:.3f} (TRADES + θ')"
            lines.append(
                f"| peak step memory MWAT ({objective}) / PGD-10 AT (below) | {value:.3f} | – "
                f"| – | {shown} | "
                f"{'–' if target is None else f'≤ {target:g}'} | "
                f"{verdict(value, target, reference)} |")

    lines += ["", "Median step time of each process (ms), the process-to-process spread:", "",
              "| process | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for index, run in enumerate(main):
        lines.append(f"| {index} | " + " | ".join(
            f"{np.median(run['times'][name]) * 1e3:.0f}" for name in variants) + " |")

    lines += ["", f"{h3} Cost in passes", "",
              "Unit costs measured side by side with the steps: F = inference forward pass "
              "(median CPU ms); every step is expressed in F.", "",
              "| step | ms | in F | model |", "|---|---|---|---|"]
    unit = float(np.median(pooled(main, "forward")))
    model_of = {
        "forward": "1",
        "attack": "10 x (F + input gradient)",
        "fwd_bwd": "training F + parameter gradient",
        "plain": "fwd_bwd + SGD",
        "pgd_at": "F (clean logits) + attack + fwd_bwd + SGD",
        "trades": "PGD-AT + a second training forward/backward (clean)",
        "mwat": "PGD-AT + inner backward + 2 x meta (F + backward) + J·v",
        "mwat_adv": "PGD-AT + inner backward + meta (F + backward) + J·v",
        "mwat_k4": "PGD-AT + (MWAT − PGD-AT) / 4",
        "mwat_adv_k4": "PGD-AT + (MWAT adversarial − PGD-AT) / 4",
        "mwat_adv_lowmem": "as `mwat_adv`, another order (the J·v backward's values unused)",
        "mwat_paper": "PGD-AT + inner backward + meta attack (PGD-10 at θ̃) + meta (F + "
                      "backward) + J·v",
        "mwat_paper_k2": "PGD-AT + (MWAT (paper) − PGD-AT) / 2",
        "mwat_paper_k4": "PGD-AT + (MWAT (paper) − PGD-AT) / 4",
    }
    order = ("plain", "pgd_at", "trades", "mwat", "mwat_adv", "mwat_k4", "mwat_adv_k4",
             "mwat_adv_lowmem", *PAPER_VARIANTS)
    for name in (*UNITS, *present(order, main)):
        ms = float(np.median(pooled(main, name)))
        lines.append(f"| `{name}` | {ms * 1e3:.1f} | {ms / unit:.1f} | {model_of[name]} |")
    fwd_bwd = float(np.median(pooled(main, "fwd_bwd")))
    pgd = float(np.median(pooled(main, "pgd_at")))
    extra = {name: float(np.median(pooled(main, name))) - pgd
             for name in present(("mwat", "mwat_adv", "mwat_adv_lowmem", "mwat_paper"), main)}
    allowed = sorted({target for _, a, _, target, _ in RATIOS
                      if a in extra and target is not None})
    lines += ["", "MWAT's meta update over PGD-AT, in training forward + backward passes "
              f"(`fwd_bwd`, {fwd_bwd * 1e3:.1f} ms): "
              + ", ".join(f"`{n}` +{v / fwd_bwd:.2f}" for n, v in extra.items())
              + f"; PGD-AT itself is {pgd / fwd_bwd:.2f}, the PGD-10 attack alone "
              f"{attack_unit_ms / fwd_bwd:.2f} (inside the PGD-AT step at most "
              f"{(pgd - fwd_bwd_ms - unit) / fwd_bwd:.2f}). "
              + "; a".join(f" ratio of {t:g} allows +{(t - 1) * pgd / fwd_bwd:.2f}"
                           for t in allowed).join(("A", ".")), ""]

    scaling = result["scaling"]
    if scaling:
        def median_of(key):
            return float(np.median(np.concatenate([np.asarray(run["times"][key])
                                                   for run in scaling])))

        def ratio_of(a, b):
            return float(np.median(np.concatenate(
                [np.asarray(run["times"][a]) / np.asarray(run["times"][b])
                 for run in scaling])))

        lines += [f"{h3} Scaling (CPU ms per step; ratios per round)", "",
                  f"{len(scaling)} fresh processes x {args.scaling_rounds} rounds of one step "
                  "each, pooled.", "",
                  "| batch | plain | PGD-10 AT | MWAT | MWAT per sample | MWAT / PGD-AT | "
                  "PGD-AT / plain |", "|---|---|---|---|---|---|---|"]
        for size in BATCHES:
            keys = {n: f"{n}|{size}|10" for n in ("plain", "pgd_at", "mwat")}
            lines.append(
                f"| {size} | {median_of(keys['plain']) * 1e3:.0f} | "
                f"{median_of(keys['pgd_at']) * 1e3:.0f} | {median_of(keys['mwat']) * 1e3:.0f} | "
                f"{median_of(keys['mwat']) * 1e3 / size:.2f} | "
                f"{ratio_of(keys['mwat'], keys['pgd_at']):.3f} | "
                f"{ratio_of(keys['pgd_at'], keys['plain']):.2f} |")
        lines += ["", "| PGD steps (batch 128) | PGD-AT | MWAT | MWAT − PGD-AT | "
                  "MWAT / PGD-AT |", "|---|---|---|---|---|"]
        for k in PGD_STEPS:
            a, b = f"mwat|128|{k}", f"pgd_at|128|{k}"
            lines.append(f"| {k} | {median_of(b) * 1e3:.0f} | {median_of(a) * 1e3:.0f} | "
                         f"{(median_of(a) - median_of(b)) * 1e3:.0f} | {ratio_of(a, b):.3f} |")
        lines.append("")

    if memory:
        lines += [f"{h3} Peak memory (MB, one fresh process per variant and sample)", "",
                  "Working memory = peak bytes requested by the step's allocations and not yet "
                  "freed (profiler trace); allocator peak = BFC chunks in use (a chunk may be "
                  "up to twice the request). Parameters (θ, float32): "
                  f"{memory['pgd_at'][0]['parameter_bytes'] / 1e6:.2f} MB.", "",
                  "| variant | working memory: median | min–max | / PGD-AT | "
                  "allocator peak: median | min–max | / PGD-AT |",
                  "|---|---|---|---|---|---|---|"]
        reference = {key: np.median([run[key] for run in memory["pgd_at"]])
                     for key in ("requested_peak", "peak")}
        for name in present(ALL_VARIANTS, [{"times": memory}]):
            cells = []
            for key in ("requested_peak", "peak"):
                values = np.array([run[key] for run in memory[name]], float)
                cells.append(f"{np.median(values) / 1e6:.1f} | {values.min() / 1e6:.1f}–"
                             f"{values.max() / 1e6:.1f} | "
                             f"{np.median(values) / reference[key]:.3f}")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def machine_paragraph(measured: dict, args) -> str:
    load = ", ".join(f"{value:.1f}" for value in measured["load"])
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared and noisy (other "
        "jobs may run: see the notes below the tables); load average at the start, between "
        f"the phases and at the end: {load}. TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, oneDNN {args.onednn} "
        f"(TF_ENABLE_ONEDNN_OPTS={'1' if args.onednn == 'on' else '0'}); one intra-op and one "
        "inter-op thread; process CPU time per step; variants interleaved round by round in "
        "a rotating order, in fresh worker processes whose samples are pooled. Batch "
        f"{args.batch_size}; PGD-10 (L-inf; eps 0.3, step 0.03 on the CNNs; eps 8/255, step "
        "2/255 on the ResNet) for every adversarial variant. First call: tracing, graph "
        "optimisation and one run of the step (CPU and wall seconds, median over the "
        "processes). Peak memory: the bytes requested by the step's allocations and alive "
        "at once, from TensorFlow's profiler trace (exact), and TensorFlow's CPU allocator "
        "peak (`get_memory_info('CPU:0')`, BFC allocator, chunk sizes), in a fresh process "
        "per variant and sample. "
        f"Total wall time {measured['wall_seconds'] / 60:.0f} min."
        + (f" Memory measured again by `{measured['memory_command']}`."
           if measured.get("memory_command") else ""))


def write_report(measured: dict, args, command: str) -> str:
    """The generated top of docs/benchmarks.md (the default variants)."""
    lines = ["# Benchmarks", "", "Produced by:", "", f"```\n{command}\n```", "",
             machine_paragraph(measured, args), ""]
    for model, result in measured["models"].items():
        lines += model_section(model, result, args)
    return "\n".join(lines)


def paper_report(measured: dict, args, command: str) -> str:
    """The generated section of a run with the paper variants (between PAPER_MARKERS)."""
    lines = [PAPER_MARKERS[0], "", PAPER_HEADING, "", "Produced by:", "",
             f"```\n{command}\n```", "",
             "`MWATModel(clf, meta_data=(x_meta, y_meta))` with the defaults (the paper's "
             "BiLAW): every step draws a meta batch of 128 from a held-out meta set of "
             f"{args.meta_size} uniform random inputs in [0, 1], takes the pseudo SGD step, "
             "attacks the meta batch with the training attack (PGD-10) against the pseudo "
             "model θ̃ and differentiates the meta loss through the pseudo step; "
             "`meta_update_every=k` does all that on every k-th step only. The exact lower "
             "bound of a ratio prices the passes any exact implementation must add to a "
             "PGD-10 AT step at this run's unit costs: for the paper's configuration one "
             "PGD-10 attack of the meta batch (priced as inside a PGD-AT step: the lower of "
             "the `attack` unit and `pgd_at − fwd_bwd − forward`), one training forward + "
             "backward on the meta batch at θ̃ (`fwd_bwd`), the inner backward and J·v (each a "
             "backward pass, `fwd_bwd − forward`); divided by k for `meta_update_every=k`.",
             "", machine_paragraph(measured, args), ""]
    for model, result in measured["models"].items():
        lines += model_section(model, result, args, level=3)
    lines += [PAPER_MARKERS[1]]
    return "\n".join(lines)


def insert_section(document: str, section: str) -> str:
    """``document`` with the paper section replaced, or inserted below the notes marker."""
    begin, end = PAPER_MARKERS
    if begin in document and end in document:
        head, rest = document.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    if NOTES_MARKER in document:
        head, rest = document.split(NOTES_MARKER, 1)
        return head + NOTES_MARKER + "\n" + section + "\n" + rest
    return document.rstrip("\n") + "\n\n" + section + "\n"


def names_of(parser, text: str, known: tuple, option: str) -> list:
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        parser.error(f"{option}: unknown or no names {unknown or text!r}; choose from "
                     f"{list(known)}")
    return list(dict.fromkeys(names))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet",
                        help=f"comma-separated, from {sorted(MODELS)} (or the zoo names "
                             f"{sorted(MODEL_ALIASES)})")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {list(ALL_VARIANTS)} (the units "
                             f"{list(UNITS)} are always timed); with any of "
                             f"{list(PAPER_VARIANTS)} the report is the section "
                             f"{PAPER_HEADING!r} of --out, replaced or inserted below the "
                             "notes marker, and the rest of --out is kept")
    parser.add_argument("--memory-variants",
                        help="variants whose peak memory is measured (default: --variants; "
                             "must include pgd_at, the reference)")
    parser.add_argument("--meta-size", type=int, default=1000,
                        help="held-out meta set of the paper variants (random inputs)")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes of the main comparison (the CNNs)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per process (the CNNs)")
    parser.add_argument("--resnet-processes", type=int, default=2)
    parser.add_argument("--resnet-rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="steps per timed sample")
    parser.add_argument("--scaling-processes", type=int, default=1)
    parser.add_argument("--scaling-rounds", type=int, default=3)
    parser.add_argument("--memory-processes", type=int, default=2)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--onednn", choices=("on", "off"), default="off")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path,
                        help="write the raw measurements here (default: a temporary file)")
    parser.add_argument("--update-memory", type=Path, metavar="RAW_JSON",
                        help="measure the peak memory again into a saved run (its timings "
                             "are kept) and render its report")
    parser.add_argument("--from-json", type=Path,
                        help="render the report of a saved run instead of measuring")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--worker", choices=("main", "scaling", "memory"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = names_of(parser, args.variants, ALL_VARIANTS, "--variants")
    args.memory_variants = (args.variants if args.memory_variants is None else
                            names_of(parser, args.memory_variants, ALL_VARIANTS,
                                     "--memory-variants"))
    if args.worker:
        worker = {"main": worker_main, "scaling": worker_scaling,
                  "memory": worker_memory}[args.worker]
        print(json.dumps(worker(args)))
        return 0
    args.models = [MODEL_ALIASES.get(m, m) for m in args.models.split(",") if m]
    args.models = names_of(parser, ",".join(args.models), tuple(MODELS), "--models")
    if not (args.from_json or args.update_memory):
        if "pgd_at" not in args.variants:
            parser.error("--variants must include pgd_at (every ratio's reference)")
        if not args.no_memory and "pgd_at" not in args.memory_variants:
            parser.error("--memory-variants must include pgd_at (the reference), or pass "
                         "--no-memory")
        scaled = {"plain", "pgd_at", "mwat"}
        if not args.no_scaling and not scaled <= set(args.variants):
            parser.error(f"the scaling runs time {sorted(scaled)}: add them to --variants "
                         "or pass --no-scaling")
    command = ("python bench/step_overhead.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])).strip()
    if args.update_memory:
        measured = json.loads(args.update_memory.read_text())
        processes = args.memory_processes
        for key, value in {**SETTING_DEFAULTS, **measured["settings"]}.items():
            setattr(args, key, value)
        args.memory_processes = measured["settings"]["memory_processes"] = processes
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if args.onednn == "on" else "0")
        started = time.perf_counter()
        for model, result in measured["models"].items():
            result["memory"] = measure_memory(args, model, env, started)
        measured["memory_command"] = command
        args.update_memory.write_text(json.dumps(measured))
        command = measured["command"]
    elif args.from_json:
        # Re-renders a saved run (its own command and settings) without measuring again.
        measured = json.loads(args.from_json.read_text())
        command = measured["command"]
        for key, value in {**SETTING_DEFAULTS, **measured["settings"]}.items():
            setattr(args, key, value)
    else:
        measured = measure(args)
        measured["command"] = command
        measured["settings"] = {key: getattr(args, key) for key in SETTINGS}
        raw = args.json or Path(tempfile.gettempdir()) / "step_overhead_last.json"
        raw.write_text(json.dumps(measured))
        print(f"raw measurements: {raw}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = args.out.read_text() if args.out.exists() else ""
    if set(PAPER_VARIANTS) & set(args.variants):
        report = paper_report(measured, args, command)
        args.out.write_text(insert_section(existing, report))
    else:
        report = write_report(measured, args, command)
        if NOTES_MARKER in existing:
            # Hand-written reading (and other sections) is kept below the marker.
            report += "\n" + NOTES_MARKER + existing.split(NOTES_MARKER, 1)[1]
        args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
