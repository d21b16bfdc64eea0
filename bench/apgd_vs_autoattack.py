"""Our APGD-CE and APGD-T against AutoAttack's reference implementation (PyTorch).

Runs ``keras_mwat.attacks.APGD`` (APGD-CE: ``loss="ce"``; APGD-T: ``loss="dlr",
targeted=True, num_target_classes=9``) and AutoAttack's ``APGDAttack(loss="ce")`` and
``APGDAttack_targeted(n_target_classes=9)`` (``autoattack/autopgd_base.py``, Croce & Hein,
ICML 2020) on the same model and the same points: the library's small CNN, briefly
PGD-adversarially trained on the embedded MNIST sample, its weights ported to an equivalent
PyTorch module (logits checked to agree), L-inf eps 0.3, 100 iterations, 1 restart, the
first ``--n`` points of the embedded test split, one batch. Reports the robust accuracy of
each attack, CPU and wall time per attack call (medians and min-max over interleaved rounds)
and the per-round ratio ours / reference; PGD-20 (ours) gives context.

The project does not depend on PyTorch: the reference runs in a subprocess under another
Python interpreter (this same file, ``--worker`` mode, which imports only NumPy, PyTorch
and AutoAttack). Set that interpreter up once, outside the repository::

    python3 -m venv /tmp/aa-venv
    /tmp/aa-venv/bin/pip install torch==2.13.0 numpy   # pin torch: CPU wheel, no CUDA
    git clone https://github.com/fra31/auto-attack /tmp/autoattack   # or any copy of it

then run (from the repository root)::

    .venv/bin/python bench/apgd_vs_autoattack.py \\
        --reference-python /tmp/aa-venv/bin/python --autoattack-path /tmp/autoattack \\
        --model /tmp/apgd_bench/model.keras --write-docs

``--autoattack-path`` is the directory holding the ``autoattack`` package (put on the
worker's ``sys.path``); ``pip install /tmp/autoattack`` into the other venv works too (then
leave the flag out). Both can also be given as ``AA_PYTHON`` and ``AA_PATH``.
``--model PATH`` loads a saved classifier (or a saved training model; its ``classifier``
is used) if PATH exists, else trains one (PGD-AT, PGD-10 at eps 0.3 with step 0.03, Adam
1e-3, ``--epochs`` epochs with a 2-epoch epsilon warm-up, batch 128) and saves it there.

Timing (the machine is shared and noisy): one intra-op and one inter-op thread in
TensorFlow (set before anything runs) and one thread in PyTorch; process CPU time and wall
time of each attack call. Reported separately and left out of the statistics: the first
call of each of our attacks (TensorFlow traces there) and the reference's first APGD-CE
call (PyTorch warm-up). The rounds interleave ours and the reference in a rotating order,
every call with new random starts (ours: one attack object per attack, seed 0, its
generator advancing; reference: seed = round index). ``--write-docs`` writes the section
"APGD vs AutoAttack's reference implementation" of docs/benchmarks.md (below the notes
marker; text after its generated block is kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
NOTES_MARKER = "<!-- notes: kept when the benchmark is re-run -->"
HEADING = "## APGD vs AutoAttack's reference implementation"
BEGIN = "<!-- apgd_vs_autoattack: generated, replaced on --write-docs -->"
END = "<!-- /apgd_vs_autoattack -->"
REPLY = "@@reply "  # prefix of the worker's protocol lines on stdout
ATTACKS = ("apgd-ce", "apgd-t")


# --------------------------------------------------------------------------------------
# Reference side: runs under the PyTorch interpreter; NumPy, PyTorch and AutoAttack only.
# --------------------------------------------------------------------------------------


def _torch_model(weights: dict):
    """The small CNN as a torch module (NCHW), from the Keras weights in ``weights``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    class SmallCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            k1, k2 = weights["conv1_kernel"], weights["conv2_kernel"]  # (kh, kw, in, out)
            self.conv1 = torch.nn.Conv2d(k1.shape[2], k1.shape[3], k1.shape[:2], padding="same")
            self.conv2 = torch.nn.Conv2d(k2.shape[2], k2.shape[3], k2.shape[:2], padding="same")
            d, o = weights["dense_kernel"], weights["logits_kernel"]  # (in, out)
            self.dense = torch.nn.Linear(*d.shape)
            self.logits = torch.nn.Linear(*o.shape)
            with torch.no_grad():
                for name in ("conv1", "conv2"):
                    layer = getattr(self, name)
                    layer.weight.copy_(torch.from_numpy(
                        np.ascontiguousarray(weights[f"{name}_kernel"].transpose(3, 2, 0, 1))))
                    layer.bias.copy_(torch.from_numpy(weights[f"{name}_bias"]))
                for name in ("dense", "logits"):
                    layer = getattr(self, name)
                    layer.weight.copy_(torch.from_numpy(
                        np.ascontiguousarray(weights[f"{name}_kernel"].T)))
                    layer.bias.copy_(torch.from_numpy(weights[f"{name}_bias"]))

        def forward(self, x):
            h = F.max_pool2d(F.relu(self.conv1(x)), 2)
            h = F.max_pool2d(F.relu(self.conv2(h)), 2)
            h = h.permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC
            h = F.relu(self.dense(h))
            return self.logits(h)

    return SmallCNN().eval()


def _reply(message: dict) -> None:
    sys.stdout.write(REPLY + json.dumps(message) + "\n")
    sys.stdout.flush()


def worker(args) -> None:
    """Serves attack requests (one JSON line each on stdin) with AutoAttack's APGD."""
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    if args.autoattack_path:
        sys.path.insert(0, args.autoattack_path)
    import autoattack
    from autoattack import autopgd_base
    from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    source = Path(autopgd_base.__file__)
    blob = np.load(args.data)
    weights = {key: blob[key] for key in blob.files if key.endswith(("_kernel", "_bias"))}
    model = _torch_model(weights)
    x = torch.from_numpy(np.ascontiguousarray(blob["x"].transpose(0, 3, 1, 2)))
    y = torch.from_numpy(blob["y"].astype(np.int64))
    with torch.no_grad():
        logits = model(x).numpy()
    _reply({
        "ready": True,
        "max_logit_diff": float(np.max(np.abs(logits - blob["keras_logits"]))),
        "argmax_agree": float(np.mean(logits.argmax(1) == blob["keras_logits"].argmax(1))),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "autoattack_file": str(source),
        "autoattack_package": str(Path(autoattack.__file__).parent),
        "autopgd_base_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    })
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        common = dict(n_iter=request["num_steps"], norm="Linf", n_restarts=1,
                      eps=request["eps"], seed=request["seed"], device="cpu", verbose=False)
        if request["attack"] == "apgd-ce":
            attack = APGDAttack(model, loss="ce", **common)
        else:
            attack = APGDAttack_targeted(model, n_target_classes=request["targets"], **common)
        cpu, wall = time.process_time(), time.perf_counter()
        adv = attack.perturb(x, y)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        with torch.no_grad():
            robust = (model(adv).argmax(1) == y).numpy()
        adv = adv.detach().numpy().transpose(0, 2, 3, 1)
        np.save(request["out"], adv)
        _reply({"cpu": cpu, "wall": wall, "robust": robust.astype(int).tolist(),
                "linf": float(np.max(np.abs(adv - blob["x"])))})


# --------------------------------------------------------------------------------------
# Our side: TensorFlow / keras_mwat.
# --------------------------------------------------------------------------------------


class Reference:
    """The reference worker subprocess: one request and one reply line at a time."""

    def __init__(self, python: str, autoattack_path: str | None, data: Path):
        command = [python, str(Path(__file__).resolve()), "--worker", "--data", str(data)]
        if autoattack_path:
            command += ["--autoattack-path", autoattack_path]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"reference worker exited (code {self.process.wait()})")

    def run(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.write(json.dumps({"quit": True}) + "\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _classifier(args, data):
    """Loads ``args.model`` if it exists, else trains the PGD-AT small CNN (and saves it)."""
    import keras

    import keras_mwat as km

    if args.model and Path(args.model).exists():
        model = keras.models.load_model(args.model)
        sidecar = Path(args.model).with_suffix(".json")
        how = json.loads(sidecar.read_text())["how"] if sidecar.exists() else "saved model"
        return getattr(model, "classifier", model), f"{how}; loaded from {args.model}"
    keras.utils.set_random_seed(args.seed)
    clf = km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10)
    trainer = km.PGDATModel(clf, attack=km.attacks.PGD(eps=0.3, step_size=0.03, num_steps=10),
                            seed=args.seed)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, batch_size=128, epochs=args.epochs, verbose=0,
                callbacks=[km.callbacks.EpsilonWarmup(epochs=2)])
    how = (f"trained here: PGD-AT (PGD-10, eps 0.3, step 0.03), Adam 1e-3, {args.epochs} "
           f"epochs, EpsilonWarmup(2), batch 128, seed {args.seed} "
           f"({time.perf_counter() - start:.0f} s)")
    if args.model:
        Path(args.model).parent.mkdir(parents=True, exist_ok=True)
        clf.save(args.model)
        Path(args.model).with_suffix(".json").write_text(json.dumps({"how": how}))
    return clf, how


def _weights(clf) -> dict:
    out = {}
    for name in ("conv1", "conv2", "dense", "logits"):
        kernel, bias = clf.get_layer(name).get_weights()
        out[f"{name}_kernel"], out[f"{name}_bias"] = kernel, bias
    return out


def _summary(values) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import keras_mwat as km

    data = km.data.load_embedded()
    x, y = data.x_test[: args.n], data.y_test[: args.n]
    clf, how = _classifier(args, data)

    def robust_of(x_adv):
        return (np.argmax(np.asarray(clf(x_adv, training=False)), axis=1) == y).astype(int)

    keras_logits = np.asarray(clf(x, training=False))
    clean = float(np.mean(keras_logits.argmax(1) == y))
    ours = {
        "apgd-ce": km.attacks.APGD(eps=args.eps, num_steps=args.steps, loss="ce", seed=0),
        "apgd-t": km.attacks.APGD(eps=args.eps, num_steps=args.steps, loss="dlr", targeted=True,
                                  num_target_classes=args.targets, seed=0),
    }
    results = {f"{side}:{name}": {"cpu": [], "wall": [], "robust": []}
               for side in ("ours", "ref") for name in ATTACKS}
    first = {}
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "data.npz"
        np.savez(blob, x=x, y=y, keras_logits=keras_logits, **_weights(clf))
        reference = Reference(args.reference_python, args.autoattack_path, blob)
        info = reference.info
        print(f"reference ready: torch {info['torch']}, max |logit diff| "
              f"{info['max_logit_diff']:.2e}", flush=True)
        if info["max_logit_diff"] > args.logit_tolerance:
            reference.close()
            raise SystemExit(f"ported model disagrees: max |logit diff| "
                             f"{info['max_logit_diff']:.3g} > {args.logit_tolerance}")

        def call(side, name, seed):
            if side == "ours":
                attack = ours[name]  # seed=0: its generator advances at every call
                cpu, wall = time.process_time(), time.perf_counter()
                x_adv = np.asarray(attack(clf, x, y, batch_size=args.batch_size))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                robust = robust_of(x_adv)
                linf = float(np.max(np.abs(x_adv - x)))
            else:
                out = str(Path(tmp) / "adv.npy")
                reply = reference.run(attack=name, eps=args.eps, num_steps=args.steps,
                                      targets=args.targets, seed=seed, out=out)
                cpu, wall, linf = reply["cpu"], reply["wall"], reply["linf"]
                robust = np.asarray(reply["robust"])
                keras_robust = robust_of(np.load(out))  # the same points judged by Keras
                results.setdefault(f"ref:{name}:keras_disagree", []).append(
                    int(np.sum(keras_robust != robust)))
            if linf > args.eps + 1e-5:
                raise SystemExit(f"{side} {name}: perturbation {linf} exceeds eps {args.eps}")
            print(f"  {side:4s} {name:7s} seed {seed}: robust {robust.mean():.3f}  "
                  f"cpu {cpu:7.2f} s  wall {wall:7.2f} s", flush=True)
            return cpu, wall, robust

        # First calls, reported separately: each of our attacks (TensorFlow traces there);
        # the reference's APGD-CE (warms PyTorch up; nothing is traced there).
        for side, name in (("ours", "apgd-ce"), ("ours", "apgd-t"), ("ref", "apgd-ce")):
            cpu, wall, robust = call(side, name, seed=0)
            first[f"{side}:{name}"] = {"cpu": cpu, "wall": wall, "robust": float(robust.mean())}
        jobs = [("ours", "apgd-ce"), ("ref", "apgd-ce"), ("ours", "apgd-t"), ("ref", "apgd-t")]
        for r in range(1, args.rounds + 1):
            print(f"round {r}/{args.rounds}", flush=True)
            shift = (r - 1) % len(jobs)
            for side, name in jobs[shift:] + jobs[:shift]:
                cpu, wall, robust = call(side, name, seed=r)
                entry = results[f"{side}:{name}"]
                entry["cpu"].append(cpu)
                entry["wall"].append(wall)
                entry["robust"].append(robust)
        reference.close()

    pgd = km.attacks.PGD(eps=args.eps, step_size=2.5 * args.eps / 20, num_steps=20, seed=0)
    pgd_first = time.process_time()
    pgd(clf, x, y, batch_size=args.batch_size)
    pgd_first = time.process_time() - pgd_first
    pgd_cpu = time.process_time()
    pgd_robust = robust_of(np.asarray(pgd(clf, x, y, batch_size=args.batch_size)))
    pgd_cpu = time.process_time() - pgd_cpu

    summary = {"clean": clean, "how": how, "reference": info, "first": first,
               "pgd20": {"robust": float(pgd_robust.mean()), "cpu": pgd_cpu,
                         "first_cpu": pgd_first}}
    for key, entry in results.items():
        if key.endswith("keras_disagree"):
            summary[key] = entry
            continue
        robust = np.stack(entry["robust"])
        summary[key] = {"cpu": _summary(entry["cpu"]), "wall": _summary(entry["wall"]),
                        "robust": _summary([float(v) for v in robust.mean(1)]),
                        "robust_per_round": [float(v) for v in robust.mean(1)]}
    for name in ATTACKS:
        ours_r = np.stack(results[f"ours:{name}"]["robust"])
        ref_r = np.stack(results[f"ref:{name}"]["robust"])
        summary[f"ratio:{name}"] = {
            kind: _summary([a / b for a, b in zip(results[f"ours:{name}"][kind],
                                                   results[f"ref:{name}"][kind])])
            for kind in ("cpu", "wall")
        }
        summary[f"agree:{name}"] = {
            "same_verdict": float(np.mean(ours_r == ref_r)),
            # robust to every round of both implementations
            "robust_to_all": float(np.mean(np.all(ours_r, 0) & np.all(ref_r, 0))),
            "ours_all_rounds": float(np.mean(np.all(ours_r, 0))),
            "ref_all_rounds": float(np.mean(np.all(ref_r, 0))),
        }
    summary["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__,
                           "numpy": np.__version__, "python": platform.python_version()}
    summary["machine"] = {"cpu": _cpu_model(), "cores": os.cpu_count(),
                          "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}
    return summary


def _fmt(s: dict, scale: float = 1.0, digits: int = 2) -> str:
    return (f"{s['median'] * scale:.{digits}f} | "
            f"{s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f}")


def _first(first: dict, key: str) -> str:
    return f"{first[key]['cpu']:.2f}" if key in first else "–"


def markdown(summary: dict, args, command: str) -> str:
    info, first = summary["reference"], summary["first"]
    label = {"apgd-ce": "APGD-CE", "apgd-t": f"APGD-T ({args.targets} targets, DLR)"}
    lines = [
        HEADING,
        "",
        BEGIN,
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {platform.machine()}, {summary['machine']['cores']} cores "
        f"({summary['machine']['cpu']}; shared, noisy). Ours: TensorFlow "
        f"{summary['versions']['tensorflow']}, Keras {summary['versions']['keras']}, "
        f"oneDNN {summary['machine']['onednn']}, one intra-op and one inter-op thread. "
        f"Reference: AutoAttack `autopgd_base.py` (sha256 "
        f"`{info['autopgd_base_sha256'][:12]}`{args.autoattack_rev and ', ' + args.autoattack_rev}"
        f"), PyTorch {info['torch']}, CPU, {info['threads']} thread "
        f"({info['interop_threads']} inter-op), Python {info['python']}.",
        "",
        f"Model: `km.zoo.small_cnn()` (width 32), {summary['how']}. Ported to an equivalent "
        f"PyTorch module (NCHW, kernels transposed, flatten in NHWC order): max |logit "
        f"difference| {info['max_logit_diff']:.1e} on the {args.n} points, argmax agreement "
        f"{info['argmax_agree']:.3f}.",
        "",
        f"Points: the first {args.n} of `km.data.load_embedded().x_test`, one batch of "
        f"{args.batch_size}; clean accuracy {summary['clean']:.3f}. Attacks: L-inf, eps "
        f"{args.eps}, {args.steps} iterations, 1 restart (per target), random start on the "
        f"ball's boundary; ours `km.attacks.APGD(loss=\"ce\", seed=0)` / `APGD(loss=\"dlr\", "
        f"targeted=True, num_target_classes={args.targets}, seed=0)` (one object each, its "
        f"seed generator advancing at every call), reference `APGDAttack(loss=\"ce\")` / "
        f"`APGDAttack_targeted(n_target_classes={args.targets})` with seed = round index; so "
        f"every call has different random starts. {args.rounds} timed rounds interleaving "
        f"ours and the reference (rotating order). Left out of the statistics and shown as "
        f"\"first call\": the first call of each of our attacks (TensorFlow traces there) "
        f"and the reference's first APGD-CE call (PyTorch warm-up). Times are per attack "
        f"call on the {args.n} points: process CPU time (and wall time, inflated by other "
        f"jobs on the shared machine).",
        "",
        "| attack | implementation | robust acc. median | min–max | CPU s median | min–max "
        "| wall s median | min–max | first call CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ATTACKS:
        for side, who in (("ours", "keras-mwat"), ("ref", "AutoAttack")):
            s = summary[f"{side}:{name}"]
            lines.append(
                f"| {label[name]} | {who} | {_fmt(s['robust'], 100, 1)} | {_fmt(s['cpu'])} "
                f"| {_fmt(s['wall'])} | {_first(first, f'{side}:{name}')} |"
            )
    p = summary["pgd20"]
    lines += [
        f"| PGD-20 (step 2.5·eps/20), context | keras-mwat | {100 * p['robust']:.1f} | – "
        f"| {p['cpu']:.2f} | – | – | – | {p['first_cpu']:.2f} |",
        "",
        "| ratio ours / reference (per round) | CPU median | min–max | wall median | min–max "
        "| target |",
        "|---|---|---|---|---|---|",
    ]
    for name in ATTACKS:
        r = summary[f"ratio:{name}"]
        lines.append(f"| {label[name]} | {_fmt(r['cpu'], 1, 2)} | {_fmt(r['wall'], 1, 2)} "
                     f"| ≤ 2 |")
    lines += [
        "",
        "| agreement over the rounds | APGD-CE | APGD-T |",
        "|---|---|---|",
        "| same verdict (robust / fooled) per point and round, ours vs reference | "
        + " | ".join(f"{summary[f'agree:{n}']['same_verdict']:.3f}" for n in ATTACKS) + " |",
        "| robust in every round, ours | "
        + " | ".join(f"{summary[f'agree:{n}']['ours_all_rounds']:.3f}" for n in ATTACKS) + " |",
        "| robust in every round, reference | "
        + " | ".join(f"{summary[f'agree:{n}']['ref_all_rounds']:.3f}" for n in ATTACKS) + " |",
        "| robust in every round of both | "
        + " | ".join(f"{summary[f'agree:{n}']['robust_to_all']:.3f}" for n in ATTACKS) + " |",
        "| reference adversarials judged differently by the Keras model (points, max) | "
        + " | ".join(str(max(summary[f"ref:{n}:keras_disagree"])) for n in ATTACKS) + " |",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    text = DOCS.read_text()
    if NOTES_MARKER not in text:
        raise SystemExit(f"{DOCS} has no notes marker {NOTES_MARKER!r}")
    head, notes = text.split(NOTES_MARKER, 1)
    if HEADING in notes:  # replace the generated block, keep what follows it
        before, rest = notes.split(HEADING, 1)
        after = rest.split(END, 1)[1] if END in rest else ""
        notes = before + section.rstrip("\n") + after
    else:
        notes = notes.rstrip("\n") + "\n\n" + section
    DOCS.write_text(head + NOTES_MARKER + notes.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", default=os.environ.get("AA_PYTHON"),
                        help="Python with torch and (or --autoattack-path) AutoAttack "
                        "[env AA_PYTHON]")
    parser.add_argument("--autoattack-path", default=os.environ.get("AA_PATH"),
                        help="directory holding the `autoattack` package [env AA_PATH]")
    parser.add_argument("--autoattack-rev", default="",
                        help="free-text label of the AutoAttack revision, for the report")
    parser.add_argument("--model", help="saved classifier to load, or where to save the "
                        "trained one")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--targets", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logit-tolerance", type=float, default=1e-4)
    parser.add_argument("--json", help="also write the raw summary here")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.reference_python:
        parser.error("--reference-python (or AA_PYTHON) is required; see the docstring")
    command = shlex.join(["python", "bench/apgd_vs_autoattack.py", *sys.argv[1:]])
    summary = run(args)
    section = markdown(summary, args, command)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.write_docs:
        write_docs(section)
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
