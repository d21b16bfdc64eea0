"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one Markdown file run in order, in one namespace (a later block may use the
names an earlier one defined, as a reader would run them), in a fresh Python process per
file (TensorFlow's global state, such as a mixed-precision policy or logical devices, stays
inside it), from a temporary working directory (files a snippet writes land there). A
block preceded by ``<!-- snippet: skip (reason) -->`` is not run; the reason must say what
is unavailable here (several machines, a GPU, a prepared dataset). ```bash blocks are not
run.

The environment switch ``KERAS_MWAT_FAST`` shortens the snippets without editing them. With
``KERAS_MWAT_FAST=1`` (the default of this test) the process first wraps a few entry points:
``keras.Model.fit`` runs at most ``FAST_EPOCHS`` epochs of at most ``FAST_STEPS`` batches,
``km.evaluate_robustness`` attacks at most ``FAST_POINTS`` points and a keras-tuner search
runs at most ``FAST_TRIALS`` trials. ``KERAS_MWAT_FAST=0 pytest tests/test_snippets.py``
runs them with their own settings (add ``-m "slow or not slow"`` for all pages; tens of
minutes on a CPU). The switch is documented in docs/quickstart.md ("Tests").

As in a notebook, the value of a block's last line, when it is an expression, is kept as
``_``; ``CHECKS`` asserts properties of the results (the README's Quick start must train
better than chance even when shortened).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Each page's snippets run in a fresh process and train: not in `make test-fast`.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
TIMEOUT = 900

#: Assertions evaluated in a file's namespace after the block with that index (0-based, in
#: the order of the file, skipped blocks included); ``_`` is the block's last value.
CHECKS: dict[tuple[str, int], list[str]] = {
    # Quick start: 10 % is chance on 10 digits.
    ("README.md", 0): ['_["accuracy"] > 0.3', '0.0 <= _["robust_accuracy"] <= _["accuracy"]'],
    ("README.md", 1): ["0.0 <= report.robust_accuracy <= report.clean_accuracy <= 1.0"],
    ("docs/index.md", 0): ['_["accuracy"] > 0.3'],
    ("docs/protocol.md", 0): ["0.0 <= report.robust_accuracy <= report.clean_accuracy"],
    ("docs/evaluation.md", 0): ["report.n == 64 or report.n == 1000",
                                "report.robust_accuracy <= report.clean_accuracy"],
    ("docs/export.md", 1): ['_[0].shape == (2, 10)', '_[1].shape == (2, 10)'],
    # The user-defined weighting: trained with its own (non-uniform) weights.
    ("docs/method.md", 1): ['0.0 <= _["robust_accuracy"] <= _["accuracy"]',
                            'history.history["weight_std"][0] > 0.0'],
}

#: Run in the snippet process before the first block: the KERAS_MWAT_FAST switch.
PREAMBLE = '''
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("KERAS_MWAT_FAST", "1") == "1":
    import functools
    import keras
    import keras_mwat

    FAST_EPOCHS, FAST_STEPS, FAST_POINTS, FAST_TRIALS = 1, 12, 64, 2
    fit = keras.Model.fit

    @functools.wraps(fit)
    def short_fit(self, *args, epochs=1, steps_per_epoch=None, validation_steps=None, **kw):
        steps = min(steps_per_epoch or FAST_STEPS, FAST_STEPS)
        val_steps = min(validation_steps or 2, 2)
        return fit(self, *args, epochs=min(epochs, FAST_EPOCHS), steps_per_epoch=steps,
                   validation_steps=val_steps if kw.get("validation_data") is not None
                   else None, **kw)

    keras.Model.fit = short_fit
    evaluate_robustness = keras_mwat.evaluate_robustness

    @functools.wraps(evaluate_robustness)
    def short_evaluation(*args, n=None, **kw):
        return evaluate_robustness(*args, n=min(n or FAST_POINTS, FAST_POINTS), **kw)

    keras_mwat.evaluate_robustness = short_evaluation
    try:
        import keras_tuner
    except ImportError:
        keras_tuner = None
    if keras_tuner is not None:
        search = keras_tuner.Tuner.search

        def short_search(self, *args, **kw):
            self.oracle.max_trials = min(self.oracle.max_trials or FAST_TRIALS, FAST_TRIALS)
            return search(self, *args, **kw)

        keras_tuner.Tuner.search = short_search
'''

#: Runs the blocks of one file (JSON on argv[1]) and writes what happened to argv[2].
RUNNER = '''
import ast, json, sys, time, traceback
blocks, result_path = json.loads(open(sys.argv[1]).read()), sys.argv[2]
namespace = {"__name__": "__main__"}
results = []
for block in blocks:
    entry = {"index": block["index"], "line": block["line"], "checks": []}
    results.append(entry)
    started = time.time()
    try:
        tree = ast.parse(block["code"])
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"<{block['file']}:{block['line']}>", "exec"), namespace)
        namespace["_"] = (eval(compile(ast.Expression(last.value), "<last>", "eval"), namespace)
                          if last is not None else None)
        for check in block["checks"]:
            entry["checks"].append([check, bool(eval(check, namespace))])
    except BaseException:
        entry["error"] = traceback.format_exc(limit=8)
        break
    finally:
        entry["seconds"] = round(time.time() - started, 1)
        entry["last"] = repr(namespace.get("_"))[:200]
        open(result_path, "w").write(json.dumps(results))
'''


def blocks_of(path: Path) -> list[dict]:
    """The ```python blocks of ``path``: code, first line, index and skip reason (or None)."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            before = next((line for line in reversed(lines[:i]) if line.strip()), "")
            match = SKIP.search(before)
            blocks.append({"code": "\n".join(lines[start:end]), "line": start + 1,
                           "index": len(blocks), "skip": match and match["reason"]})
            i = end
        i += 1
    return blocks


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_every_skip_marker_gives_a_reason_and_is_rare():
    skipped = [(relative(path), block["line"], block["skip"])
               for path in FILES for block in blocks_of(path) if block["skip"]]
    total = sum(len(blocks_of(path)) for path in FILES)
    assert total > 20  # the extraction finds the blocks
    assert len(skipped) <= total // 5, skipped
    for name, line, reason in skipped:
        assert len(reason.split()) >= 3, f"{name}:{line}: say why the block cannot run"


def test_checks_refer_to_existing_blocks():
    for (name, index) in CHECKS:
        blocks = blocks_of(ROOT / name)
        assert index < len(blocks) and not blocks[index]["skip"], (name, index)


#: Pages whose shortened snippets still take more than about 30 s on 2 busy cores (several
#: trainings, an AutoAttack run, a strategy); ``make test-slow`` runs them.
SLOW = {"docs/distributed.md", "docs/evaluation.md", "docs/tuning.md"}


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=[pytest.mark.slow] if relative(p) in SLOW else [], id=relative(p))
    for p in FILES if any(not b["skip"] for b in blocks_of(p))])
def test_snippets_run_as_written(path, tmp_path):
    name = relative(path)
    blocks = [{**block, "file": name, "checks": CHECKS.get((name, block["index"]), [])}
              for block in blocks_of(path) if not block["skip"]]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "run_snippets.py").write_text(PREAMBLE + RUNNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "KERAS_MWAT_FAST": os.environ.get("KERAS_MWAT_FAST", "1")}
    process = subprocess.run(
        [sys.executable, "run_snippets.py", "blocks.json", "results.json"], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=TIMEOUT)
    results_file = tmp_path / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    for result in results:
        where = f"{name}:{result['line']}"
        assert "error" not in result, f"{where} failed:\n{result['error']}"
        for check, passed in result["checks"]:
            assert passed, f"{where}: {check} is false"
    assert process.returncode == 0 and len(results) == len(blocks), (
        f"{name}: exit {process.returncode}\n{process.stderr[-3000:]}")
