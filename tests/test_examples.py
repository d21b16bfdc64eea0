"""The examples run end to end with their tiny settings.

Each script runs in a fresh subprocess (as a user would run it), from a temporary working
directory, and must exit with 0 and print its key result lines. The default suite runs
train_embedded, evaluate_saved_model, export_for_serving and train_tfds (about a minute on
2 idle cores); the slower or redundant runs are marked ``slow`` (``make test-slow``). The
tutorial notebook is executed in a Jupyter kernel by ``tests/test_notebook.py``.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

# Each example runs in its own process (10-40 s): not in `make test-fast`.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOK = ROOT / "notebooks" / "tutorial.py"
TIMEOUT = 600


def run(script: Path, *args: str, cwd: Path) -> str:
    """Runs ``script`` with ``args``; returns its stdout after checking the exit code."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{script.name} {' '.join(args)} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}")
    return result.stdout


def accuracies(output: str) -> tuple[float, float]:
    """The numbers on the ``clean accuracy:`` and ``robust accuracy:`` lines."""
    values = {}
    for line in output.splitlines():
        for key in ("clean accuracy:", "robust accuracy:"):
            if line.startswith(key):
                values[key] = float(line[len(key):].split()[0])
    assert set(values) == {"clean accuracy:", "robust accuracy:"}, output[-2000:]
    clean, robust = values["clean accuracy:"], values["robust accuracy:"]
    assert 0.0 <= robust <= 1.0 and 0.0 <= clean <= 1.0
    return clean, robust


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A tiny MWAT (BiLAW) model saved by train_embedded.py (also the test of that example)."""
    directory = tmp_path_factory.mktemp("train_embedded")
    path = directory / "mwat.keras"
    output = run(EXAMPLES / "train_embedded.py", "--tiny", "--seed", "1", "--save", str(path),
                 cwd=directory)
    clean, robust = accuracies(output)
    assert "model.evaluate (training attack):" in output and "val_robust_accuracy" in output
    assert "PGD-5 x 1 restarts" in output and "L-inf eps=0.1" in output
    # The meta set is held out of the 512 training digits and not trained on.
    assert "meta=64" in output and "on 448 digits (64 held out as the meta set)" in output
    assert "meta_loss" in output and "learned weights on the test digits" in output
    assert path.exists()
    return path


def test_train_embedded(trained_model):
    assert trained_model.stat().st_size > 0


def test_evaluate_saved_model(trained_model, tmp_path):
    report_path = tmp_path / "report.json"
    output = run(EXAMPLES / "evaluate_saved_model.py", "--model", str(trained_model), "--tiny",
                 "--seed", "1", "--json", str(report_path), cwd=tmp_path)
    clean, robust = accuracies(output)
    assert robust <= clean
    assert "PGD-20x2" in output and "APGD-CE" in output and "worst case" in output
    report = json.loads(report_path.read_text())
    assert report["n"] == 32 and report["seed"] == 1 and report["eps"] == 0.1
    assert [entry["name"] for entry in report["attacks"]] == ["PGD-20x2", "APGD-CE"]
    assert report["robust_accuracy"] == pytest.approx(robust, abs=1e-4)


def test_export_for_serving(trained_model, tmp_path):
    output = run(EXAMPLES / "export_for_serving.py", "--model", str(trained_model),
                 "--out", str(tmp_path / "clf"), "--tiny", "--seed", "1", cwd=tmp_path)
    assert "served logits match the Keras model: True" in output
    assert "saved_model_cli show --dir" in output and "tensorflow/serving" in output
    assert (tmp_path / "clf" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_export_for_serving_trains_its_own_model(tmp_path):
    output = run(EXAMPLES / "export_for_serving.py", "--tiny", "--seed", "2",
                 "--out", str(tmp_path / "clf"), cwd=tmp_path)
    assert "served logits match the Keras model: True" in output
    assert "signature inputs: {'image'" in output


def test_train_tfds_on_a_locally_stored_dataset(tmp_path):
    data_dir = tmp_path / "tfds"
    # In this process (TensorFlow is loaded already): the example's own main().
    make_tiny_tfds = runpy.run_path(str(EXAMPLES / "make_tiny_tfds.py"), run_name="example")
    assert make_tiny_tfds["main"]([str(data_dir)]) == "tiny_cifar"
    assert (data_dir / "tiny_cifar" / "1.0.0").is_dir()
    output = run(EXAMPLES / "train_tfds.py", "--dataset", "tiny_cifar", "--data-dir",
                 str(data_dir), "--tiny", "--seed", "1", cwd=tmp_path)
    accuracies(output)
    assert "input (32, 32, 3), 10 classes" in output
    assert "meta set: the first 16 training images" in output
    assert "(32 test samples)" in output


@pytest.mark.slow
def test_train_tfds_fails_clearly_without_the_data(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_tfds.py"), "--dataset", "cifar10",
         "--data-dir", str(tmp_path / "empty"), "--tiny"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "FileNotFoundError" in result.stderr and "download=False" in result.stderr


@pytest.mark.slow
def test_compare_methods(tmp_path):
    output = run(EXAMPLES / "compare_methods.py", "--tiny", "--seed", "1", cwd=tmp_path)
    assert "| method | clean accuracy | robust accuracy" in output
    rows = [line for line in output.splitlines() if line.startswith(("| mwat", "| pgd_at"))]
    assert len(rows) == 2
    # MWAT trains without its 64 held-out meta digits, PGD-AT on all 512.
    digits = {row.split("|")[1].strip(): int(row.split("|")[4]) for row in rows}
    assert digits == {"mwat": 448, "pgd_at": 512}


@pytest.mark.slow
def test_tune(tmp_path):
    output = run(EXAMPLES / "tune.py", "--tiny", "--seed", "1", "--directory",
                 str(tmp_path / "tuning"), cwd=tmp_path)
    accuracies(output)
    assert "best val_robust_accuracy:" in output and "best hyperparameters:" in output
    assert "meta=32" in output and "'meta_learning_rate'" in output


def test_tutorial_is_a_jupytext_notebook_with_a_tiny_parameter_cell():
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(NOTEBOOK)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "TINY = True" in tagged[0].source
    assert notebook.cells[0].cell_type == "markdown"
    assert sum(cell.cell_type == "code" for cell in notebook.cells) >= 8
