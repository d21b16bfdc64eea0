"""A user's commonest mistakes with ``keras-mwat`` end in one line naming the flag, rc != 0.

Every case runs ``main`` in-process (no training starts: each error is found first) and
checks the message a user sees: one line, no traceback, the offending flag in it, and the
fix where there is one. One case runs the real command in a subprocess for the exit status
and the absence of a traceback on stderr.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mwat.cli import main

ROOT = Path(__file__).resolve().parents[1]


def error_of(argv, capsys) -> tuple[int, str]:
    """Runs ``keras-mwat argv``; returns the exit status and the one line the user sees."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    if isinstance(code, str):  # SystemExit("keras-mwat ...") prints the text, exits with 1
        status, text = 1, code
    else:  # a usage error: the line went to stderr
        status, text = code, capsys.readouterr().err
    assert status not in (0, None)
    text = text.strip()
    assert "\n" not in text and "Traceback" not in text, text
    assert text.startswith("keras-mwat"), text
    return status, text


@pytest.fixture()
def not_a_model(tmp_path) -> Path:
    path = tmp_path / "model.keras"
    path.write_text("not a zip archive")
    return path


# ------------------------------------------------------------------------------ export


def test_export_missing_model(tmp_path, capsys):
    _, text = error_of(["export", "--model", str(tmp_path / "nope.keras"),
                        "--out", str(tmp_path / "out")], capsys)
    assert "--model" in text and "nope.keras" in text and "does not exist" in text


def test_export_model_that_is_not_a_keras_file(tmp_path, not_a_model, capsys):
    _, text = error_of(["export", "--model", str(not_a_model), "--out", str(tmp_path / "o")],
                       capsys)
    assert "--model" in text and "not a .keras file" in text


def test_export_existing_out_names_the_overwrite_flag(tmp_path, not_a_model, capsys):
    out = tmp_path / "export" / "1"
    out.mkdir(parents=True)
    (out / "saved_model.pb").write_text("")
    _, text = error_of(["export", "--model", str(not_a_model), "--out", str(out)], capsys)
    assert f"--out {out}" in text and "--overwrite" in text
    assert "overwrite=True" not in text  # the CLI flag, not the Python argument


def test_export_out_that_is_a_file(tmp_path, not_a_model, capsys):
    out = tmp_path / "file"
    out.write_text("")
    _, text = error_of(["export", "--model", str(not_a_model), "--out", str(out),
                        "--overwrite"], capsys)
    assert "--out" in text and "is a file" in text


def test_export_without_model_flag(tmp_path, capsys):
    status, text = error_of(["export", "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "--model" in text and "required" in text and "--help" in text


def test_export_command_line_exits_nonzero_without_traceback(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "keras_mwat", "export", "--model", "missing.keras",
         "--out", "out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-mwat export: --model missing.keras does not exist"), last


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_missing_model(tmp_path, capsys):
    _, text = error_of(["evaluate", "--model", str(tmp_path / "nope.keras")], capsys)
    assert "--model" in text and "does not exist" in text


def test_evaluate_model_is_a_directory(tmp_path, capsys):
    _, text = error_of(["evaluate", "--model", str(tmp_path)], capsys)
    assert "--model" in text and "is a directory" in text


@pytest.mark.parametrize("eps", ["-1", "abc"])
def test_evaluate_bad_eps(tmp_path, eps, capsys):
    status, text = error_of(["evaluate", "--model", "m.keras", "--eps", eps], capsys)
    assert status == 2 and "--eps" in text and eps in text


def test_evaluate_fashion_mnist_missing_shows_the_install_command(tmp_path, not_a_model,
                                                                  capsys):
    _, text = error_of(["evaluate", "--model", str(not_a_model), "--dataset", "fashion_mnist",
                        "--data-dir", str(tmp_path)], capsys)
    assert "--dataset fashion_mnist" in text and "--data-dir" in text
    assert "sudo apt-get install dataset-fashion-mnist" in text
    assert "path=" not in text  # CLI flags, not the Python argument


# ------------------------------------------------------------------------- train, compare


def test_train_unknown_method(capsys):
    status, text = error_of(["train", "--method", "bilaw"], capsys)
    assert status == 2 and "--method" in text and "'bilaw'" in text and "mwat" in text


@pytest.mark.parametrize("flag,value", [("--eps", "-0.1"), ("--epochs", "0"),
                                        ("--batch-size", "x")])
def test_train_bad_numbers(flag, value, capsys):
    status, text = error_of(["train", flag, value], capsys)
    assert status == 2 and flag in text and value in text


def test_train_fashion_mnist_missing_shows_the_install_command(tmp_path, capsys):
    _, text = error_of(["train", "--dataset", "fashion_mnist", "--data-dir", str(tmp_path),
                        "--epochs", "1"], capsys)
    assert "--dataset fashion_mnist" in text and "train-images-idx3-ubyte.gz" in text
    assert "sudo apt-get install dataset-fashion-mnist" in text


def test_train_tfds_dataset_not_prepared(tmp_path, capsys):
    _, text = error_of(["train", "--dataset", "tfds:mnist", "--data-dir", str(tmp_path),
                        "--epochs", "1"], capsys)
    assert "--dataset tfds:mnist is not prepared" in text and f"--data-dir {tmp_path}" in text
    assert "tfds build mnist" in text


def test_train_unknown_tfds_name(tmp_path, capsys):
    _, text = error_of(["train", "--dataset", "tfds:no_such_dataset", "--data-dir",
                        str(tmp_path)], capsys)
    assert "--dataset tfds:no_such_dataset" in text and "Unknown TFDS dataset" in text


def test_train_unknown_dataset(capsys):
    _, text = error_of(["train", "--dataset", "cifar", "--epochs", "1"], capsys)
    assert "--dataset" in text and "'cifar'" in text and "tfds:NAME" in text


def test_compare_unknown_method(capsys):
    status, text = error_of(["compare", "--methods", "mwat,madry"], capsys)
    assert status == 2 and "--methods" in text and "'madry'" in text


def test_compare_bad_seeds(capsys):
    status, text = error_of(["compare", "--seeds", "0,-1"], capsys)
    assert status == 2 and "--seeds" in text


def test_compare_tfds_dataset_not_prepared(tmp_path, capsys):
    _, text = error_of(["compare", "--dataset", "tfds:mnist", "--data-dir", str(tmp_path)],
                       capsys)
    assert "keras-mwat compare: --dataset tfds:mnist is not prepared" in text


# ---------------------------------------------------------------------------- tune, figures


@pytest.mark.parametrize("flag,value", [("--eps", "0"), ("--max-trials", "-2")])
def test_tune_bad_numbers(flag, value, capsys):
    status, text = error_of(["tune", flag, value], capsys)
    assert status == 2 and flag in text and value in text


def test_figures_without_results(capsys):
    status, text = error_of(["figures"], capsys)
    assert status == 2 and "--results" in text


def test_unknown_subcommand(capsys):
    status, text = error_of(["trian"], capsys)
    assert status == 2 and "'trian'" in text and "train" in text
