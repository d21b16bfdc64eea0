"""Cost of one training step: plain, PGD-10 AT, TRADES and MWAT, on a small CNN and ResNet.

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

Run: ``.venv/bin/python bench/step_overhead.py`` (about 30 minutes; ``--help`` for the knobs).
``--update-memory RAW.json`` measures the memory again into a saved run, keeping its timings.
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

MODELS = {
    "cnn": "small CNN (`km.zoo.small_cnn()`, 28x28x1, the embedded MNIST digits)",
    "resnet": "small ResNet (`km.zoo.small_resnet()`, 32x32x3, uniform random images)",
}
VARIANTS = ("plain", "pgd_at", "trades", "mwat", "mwat_k4", "mwat_adv", "mwat_adv_k4",
            "mwat_adv_lowmem")
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
                       'hypergradient_mode="low_memory" (the defaults)',
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
# * TRADES: the recorded forward + backward on the clean inputs.
RATIOS = (
    ("MWAT / PGD-10 AT (batch, adversarial, low_memory: the defaults)", "mwat_adv_lowmem",
     "pgd_at", 1.25, (1.0, 2.0)),
    ("MWAT / PGD-10 AT (batch, adversarial, reverse)", "mwat_adv", "pgd_at", 1.25, (1.0, 2.0)),
    ("MWAT / PGD-10 AT (batch, both, reverse)", "mwat", "pgd_at", 1.25, (2.0, 2.0)),
    ("MWAT k=4 / PGD-10 AT (adversarial, reverse)", "mwat_adv_k4", "pgd_at", 1.1, (0.25, 0.5)),
    ("MWAT k=4 / PGD-10 AT (both, reverse)", "mwat_k4", "pgd_at", 1.1, (0.5, 0.5)),
    ("PGD-10 AT / plain", "pgd_at", "plain", 11.0, None),
    ("TRADES / PGD-10 AT", "trades", "pgd_at", 1.15, (1.0, 0.0)),
)
BATCHES = (64, 128, 256)
PGD_STEPS = (5, 10, 20)
MEMORY_TARGET = 1.5
SETTINGS = ("models", "processes", "rounds", "resnet_processes", "resnet_rounds", "repeats",
            "scaling_processes", "scaling_rounds", "memory_processes", "onednn", "batch_size",
            "seed")


# ------------------------------------------------------------------- building steps
def batch(model: str, batch_size: int, seed: int):
    if model == "cnn":
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
    return km.zoo.small_resnet(input_shape=(32, 32, 3), num_classes=10)


def attack(model: str, num_steps: int = 10):
    if model == "cnn":
        return km.attacks.PGD(eps=0.3, step_size=0.03, num_steps=num_steps)
    return km.attacks.PGD(eps=8 / 255, step_size=2 / 255, num_steps=num_steps)


def sgd():
    return keras.optimizers.SGD(0.01, momentum=0.9)


def build_step(name: str, model: str, seed: int, num_steps: int = 10):
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
        wrapper = km.MWATModel(net, attack=pgd, seed=seed, meta_source="batch", **options)
    wrapper.compile(optimizer=sgd())
    return tf.function(wrapper.train_step)


def steps_per_sample(name: str, repeats: int) -> int:
    """Steps timed together: a multiple of 4 for ``meta_update_every=4`` (one update each)."""
    return 4 * -(-repeats // 4) if name in ("mwat_k4", "mwat_adv_k4") else repeats


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
    for name in (*VARIANTS, *UNITS):
        step = build_step(name, args.model, args.seed)
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
    step = build_step(args.variant, args.model, args.seed)
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
               str(args.seed), "--batch-size", str(args.batch_size), *extra]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(args) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if args.onednn == "on" else "0")
    results = {m: {"main": [], "scaling": [], "memory": {}} for m in args.models}
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    for index in range(max(args.processes, args.resnet_processes)):
        for model in args.models:
            wanted = args.processes if model == "cnn" else args.resnet_processes
            if index < wanted:
                results[model]["main"].append(spawn(
                    args, "main", model, ["--rounds", str(args.rounds if model == "cnn" else
                                                          args.resnet_rounds),
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
        for name in VARIANTS:
            memory.setdefault(name, []).append(spawn(args, "memory", model,
                                                     ["--variant", name], memory_env))
        log(f"{model} memory processes {index + 1} done", started)
    return memory


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


def model_section(model: str, result: dict, args) -> list:
    main = result["main"]
    lines = [f"## {MODELS[model]}", ""]
    rounds = args.rounds if model == "cnn" else args.resnet_rounds
    lines += [f"{len(main)} fresh processes x {rounds} rounds, pooled; a sample is "
              f"{args.repeats} consecutive steps ({steps_per_sample('mwat_k4', args.repeats)}"
              " for MWAT k=4: one meta update in each).", ""]

    lines += ["### Step time (CPU ms per step)", "",
              "| variant | median | IQR | min–max | first call CPU s | first call wall s |",
              "|---|---|---|---|---|---|"]
    for name in (*VARIANTS, *UNITS):
        median, q1, q3, low, high = stats(pooled(main, name) * 1e3)
        cpu = np.median([run["first_call"][name][0] for run in main])
        wall = np.median([run["first_call"][name][1] for run in main])
        lines.append(f"| `{name}`: {DESCRIPTIONS[name]} | {median:.1f} | {q1:.1f}–{q3:.1f} | "
                     f"{low:.1f}–{high:.1f} | {cpu:.2f} | {wall:.2f} |")

    lines += ["", "### Ratios (per round, side by side; pooled over processes)", "",
              "| ratio | median | IQR | min–max | exact lower bound | target | status |",
              "|---|---|---|---|---|---|---|"]
    pgd_ms = float(np.median(pooled(main, "pgd_at")))
    fwd_bwd_ms = float(np.median(pooled(main, "fwd_bwd")))
    backward_ms = fwd_bwd_ms - float(np.median(pooled(main, "forward")))
    for label, a, b, target, passes in RATIOS:
        median, q1, q3, low, high = stats(pooled_ratio(main, a, b))
        shown = "–" if target is None else f"≤ {target:g}"
        bound = None if passes is None else (
            1.0 + (passes[0] * fwd_bwd_ms + passes[1] * backward_ms) / pgd_ms)
        lines.append(f"| {label} | {median:.3f} | {q1:.3f}–{q3:.3f} | {low:.3f}–{high:.3f} | "
                     f"{'–' if bound is None else f'{bound:.3f}'} | {shown} | "
                     f"{verdict(median, target, bound)} |")
    memory = result["memory"]
    if memory:
        peak = {name: np.median([run["requested_peak"] for run in runs])
                for name, runs in memory.items()}
        # Bound with the forward reused: TRADES's peak (two recorded training forwards at
        # once, and one backward) plus the look-ahead parameters θ', which MWAT must hold too.
        parameters = memory["pgd_at"][0]["parameter_bytes"]
        bound = (peak["trades"] + parameters) / peak["pgd_at"]
        for name, objective in (("mwat_adv_lowmem", "adversarial, low_memory: the defaults"),
                                ("mwat_adv", "adversarial, reverse"),
                                ("mwat", "both, reverse")):
            value = peak[name] / peak["pgd_at"]
            lines.append(f"| peak step memory MWAT ({objective}) / PGD-10 AT (below) | "
                         f"{value:.3f} | – | – | {bound:.3f} (TRADES + θ') | "
                         f"≤ {MEMORY_TARGET:g} | {verdict(value, MEMORY_TARGET, bound)} |")

    lines += ["", "Median step time of each process (ms), the process-to-process spread:", "",
              "| process | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for index, run in enumerate(main):
        lines.append(f"| {index} | " + " | ".join(
            f"{np.median(run['times'][name]) * 1e3:.0f}" for name in VARIANTS) + " |")

    lines += ["", "### Cost in passes", "",
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
    }
    for name in (*UNITS, "plain", "pgd_at", "trades", "mwat", "mwat_adv", "mwat_k4",
                 "mwat_adv_k4", "mwat_adv_lowmem"):
        ms = float(np.median(pooled(main, name)))
        lines.append(f"| `{name}` | {ms * 1e3:.1f} | {ms / unit:.1f} | {model_of[name]} |")
    fwd_bwd = float(np.median(pooled(main, "fwd_bwd")))
    pgd = float(np.median(pooled(main, "pgd_at")))
    extra = {name: float(np.median(pooled(main, name))) - pgd
             for name in ("mwat", "mwat_adv")}
    lines += ["", "MWAT's meta update over PGD-AT, in training forward + backward passes "
              f"(`fwd_bwd`, {fwd_bwd * 1e3:.1f} ms): "
              + ", ".join(f"`{n}` +{v / fwd_bwd:.2f}" for n, v in extra.items())
              + f"; PGD-AT itself is {pgd / fwd_bwd:.2f}. A ratio of 1.25 allows "
              f"+{0.25 * pgd / fwd_bwd:.2f}.", ""]

    scaling = result["scaling"]
    if scaling:
        def median_of(key):
            return float(np.median(np.concatenate([np.asarray(run["times"][key])
                                                   for run in scaling])))

        def ratio_of(a, b):
            return float(np.median(np.concatenate(
                [np.asarray(run["times"][a]) / np.asarray(run["times"][b])
                 for run in scaling])))

        lines += ["### Scaling (CPU ms per step; ratios per round)", "",
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
        lines += ["### Peak memory (MB, one fresh process per variant and sample)", "",
                  "Working memory = peak bytes requested by the step's allocations and not yet "
                  "freed (profiler trace); allocator peak = BFC chunks in use (a chunk may be "
                  "up to twice the request). Parameters (θ, float32): "
                  f"{memory['pgd_at'][0]['parameter_bytes'] / 1e6:.2f} MB.", "",
                  "| variant | working memory: median | min–max | / PGD-AT | "
                  "allocator peak: median | min–max | / PGD-AT |",
                  "|---|---|---|---|---|---|---|"]
        reference = {key: np.median([run[key] for run in memory["pgd_at"]])
                     for key in ("requested_peak", "peak")}
        for name in VARIANTS:
            cells = []
            for key in ("requested_peak", "peak"):
                values = np.array([run[key] for run in memory[name]], float)
                cells.append(f"{np.median(values) / 1e6:.1f} | {values.min() / 1e6:.1f}–"
                             f"{values.max() / 1e6:.1f} | "
                             f"{np.median(values) / reference[key]:.3f}")
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_report(measured: dict, args, command: str) -> str:
    load = ", ".join(f"{value:.1f}" for value in measured["load"])
    lines = [
        "# Benchmarks",
        "",
        "Produced by:",
        "",
        f"```\n{command}\n```",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared and noisy (other "
        "jobs may run: see the notes below the tables); load average at the start, between "
        f"the phases and at the end: {load}. TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, oneDNN {args.onednn} "
        f"(TF_ENABLE_ONEDNN_OPTS={'1' if args.onednn == 'on' else '0'}); one intra-op and one "
        "inter-op thread; process CPU time per step; variants interleaved round by round in "
        "a rotating order, in fresh worker processes whose samples are pooled. Batch "
        f"{args.batch_size}; PGD-10 (L-inf; eps 0.3, step 0.03 on the CNN; eps 8/255, step "
        "2/255 on the ResNet) for every adversarial variant. First call: tracing, graph "
        "optimisation and one run of the step (CPU and wall seconds, median over the "
        "processes). Peak memory: the bytes requested by the step's allocations and alive "
        "at once, from TensorFlow's profiler trace (exact), and TensorFlow's CPU allocator "
        "peak (`get_memory_info('CPU:0')`, BFC allocator, chunk sizes), in a fresh process "
        "per variant and sample. "
        f"Total wall time {measured['wall_seconds'] / 60:.0f} min."
        + (f" Memory measured again by `{measured['memory_command']}`."
           if measured.get("memory_command") else ""),
        "",
    ]
    for model, result in measured["models"].items():
        lines += model_section(model, result, args)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes of the main comparison (CNN)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per process (CNN)")
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
    if args.worker:
        worker = {"main": worker_main, "scaling": worker_scaling,
                  "memory": worker_memory}[args.worker]
        print(json.dumps(worker(args)))
        return 0
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {sorted(MODELS)}")
    command = ("python bench/step_overhead.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])).strip()
    if args.update_memory:
        measured = json.loads(args.update_memory.read_text())
        processes = args.memory_processes
        for key, value in measured["settings"].items():
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
        for key, value in measured["settings"].items():
            setattr(args, key, value)
    else:
        measured = measure(args)
        measured["command"] = command
        measured["settings"] = {key: getattr(args, key) for key in SETTINGS}
        raw = args.json or Path(tempfile.gettempdir()) / "step_overhead_last.json"
        raw.write_text(json.dumps(measured))
        print(f"raw measurements: {raw}", file=sys.stderr)
    report = write_report(measured, args, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and NOTES_MARKER in args.out.read_text():
        # Hand-written reading of the numbers (and other sections) is kept below the marker.
        report += "\n" + NOTES_MARKER + args.out.read_text().split(NOTES_MARKER, 1)[1]
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
