"""Bit identity: refactorings must not change a single training, attack or evaluation number.

The fixture (``fixtures/bit_identity.npz``) was recorded by ``tests/regression/snapshot.py``
before the method-core refactoring (issue 16). The snapshot is recomputed in a fresh process
with one thread (``snapshot.py``'s module docstring says what it holds) and every entry must
be equal, bit for bit (``np.array_equal`` / equal SHA-256 digests of the bytes); no
tolerance anywhere. CPU float results depend on the TensorFlow / Keras build and on the
processor's instruction set (oneDNN picks its kernels at run time), so on other versions the
test is skipped: re-record the fixture there with ``python -m tests.regression.snapshot
--record`` *before* a refactoring, from the commit it starts from.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.regression import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def recorded():
    with np.load(snapshot.FIXTURE) as data:
        recorded = {key: data[key] for key in data.files}
    versions = json.loads(str(recorded["meta/versions"]))
    here = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if any(versions[name] != version for name, version in here.items()):
        pytest.skip(f"fixture recorded on {versions}, running {here}: re-record it")
    return recorded


@pytest.fixture(scope="module")
def fresh(recorded, tmp_path_factory):
    path = tmp_path_factory.mktemp("snapshot") / "snapshot.npz"
    result = subprocess.run(
        [sys.executable, "-m", "tests.regression.snapshot", "--out", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _differences(recorded: dict, fresh: dict) -> list[str]:
    """Human-readable differences between two snapshots (empty: bit-identical)."""
    problems = []
    if set(recorded) != set(fresh):
        problems.append(f"keys differ: missing {sorted(set(recorded) - set(fresh))}, "
                        f"new {sorted(set(fresh) - set(recorded))}")
    for key in sorted(set(recorded) & set(fresh)):
        if key.endswith(("#probe", "#shape")) or key == "meta/versions":
            continue
        old, new = recorded[key], fresh[key]
        if key.endswith("#sha256"):
            if str(old) == str(new):
                continue
            base = key[: -len("#sha256")]
            delta = np.max(np.abs(fresh[base + "#probe"].astype(np.float64)
                                  - recorded[base + "#probe"].astype(np.float64)))
            problems.append(f"{base}: bytes differ (max |diff| over the probe {delta:.3g})")
        elif old.dtype.kind == "U":
            if str(old) != str(new):
                problems.append(f"{key}: {str(old)[:300]} != {str(new)[:300]}")
        elif old.dtype != new.dtype or not np.array_equal(old, new):
            delta = (np.max(np.abs(old.astype(np.float64) - new.astype(np.float64)))
                     if old.shape == new.shape else "shape")
            problems.append(f"{key}: arrays differ (max |diff| {delta})")
    return problems


def test_snapshot_covers_every_method_and_attack(recorded):
    import keras_mwat as km

    for name in km.METHODS:
        assert f"train/{name}/logs/loss" in recorded
        assert any(k.startswith(f"train/{name}/classifier/") for k in recorded)
    for name in ("mwat", "mwat_trades", "mwn"):
        assert any(k.startswith(f"train/{name}/weight_net/") for k in recorded)
    attacked = {k.split("/")[1].split("#")[0] for k in recorded if k.startswith("attack/")}
    assert {"PGD", "FGSM", "CWPGD", "APGD-CE", "APGD-T", "FAB", "FAB-T", "Square"} <= attacked
    report = json.loads(str(recorded["evaluation/report"]))
    assert report["n"] == 48 and len(report["attacks"]) == 2


def test_comparison_detects_a_one_ulp_change(recorded):
    """The comparison itself can fail: one ulp in a whole array or in a digested one."""
    whole = next(k for k in recorded if k.startswith("train/mwat/weight_net/"))
    digested = next(k for k in recorded if k.endswith("#sha256"))
    assert _differences(recorded, dict(recorded)) == []
    changed = dict(recorded)
    changed[whole] = np.nextafter(recorded[whole], np.inf)
    (problem,) = _differences(recorded, changed)
    assert problem.startswith(f"{whole}: arrays differ")
    array = np.arange(snapshot.WHOLE_LIMIT + 1, dtype=np.float32)
    bumped = array.copy()
    bumped[-1] = np.nextafter(bumped[-1], np.inf)
    assert snapshot.digest(array) != snapshot.digest(bumped)
    assert snapshot.digest(array) != snapshot.digest(array.astype(np.float64))
    changed = dict(recorded)
    changed[digested] = np.array("0" * 64)
    assert len(_differences(recorded, changed)) == 1


@pytest.mark.integration
def test_training_attacks_and_evaluation_are_bit_identical(recorded, fresh):
    problems = _differences(recorded, fresh)
    assert not problems, "\n".join(problems)
