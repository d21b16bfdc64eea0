"""The CIFAR commands of docs/cifar.md: every one parses, and one runs end to end on a tiny
stand-in for CIFAR-10 (offline, CPU), then resumes without training again."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from keras_mwat.cli import build_parser, main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cifar.md"
SMOKE_ROW = "tfds:cifar10 --data-dir data/tfds --recipe paper-cifar --model wide_resnet --eps 8/255"


def _commands() -> list[list[str]]:
    """Every ``keras-mwat ...`` command of the docs' bash blocks, as argument lists."""
    text = DOCS.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("keras-mwat "):
                commands.append(shlex.split(line)[1:])
    return commands


def _overrides() -> list[str]:
    """The smoke test's overrides, as the docs state them."""
    (block,) = re.findall(r"```text\n(--epochs.*?)\n```", DOCS.read_text(), flags=re.S)
    return shlex.split(block)


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_every_documented_command_parses_with_the_rows_settings():
    commands = _commands()
    assert len(commands) == 5  # Table 2's four rows and Table 3's
    parser = build_parser()
    rows = set()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.command == "compare" and args.recipe == "paper-cifar"
        assert args.mixed_precision is True and args.strategy == "mirrored"
        assert args.eval_attacks == "autoattack" and args.best_eval == "autoattack"
        assert args.test_subset == 1000 and args.resume is not None
        assert args.eps in (2 / 255, 8 / 255)
        rows.add((args.dataset, args.model, round(args.eps * 255)))
        if args.dataset == "tfds:cifar10":
            assert args.methods == ["pgd_at", "trades", "gairat", "wmmr:alpha=0.1",
                                    "mail:slope=5:bias=0.05", "mwat_nonparametric", "mwat",
                                    "mwat_trades"]
        else:
            assert args.methods[0] == "mwat_trades" and "trades:beta=1" in args.methods
    assert rows == {("tfds:cifar10", m, e) for m in ("cifar_small_cnn", "wide_resnet")
                    for e in (2, 8)} | {("tfds:cifar100", "wide_resnet", 8)}
    # Each row writes to its own folder.
    assert len({_value(argv, "--resume") for argv in commands}) == 5


def test_eps_accepts_a_fraction_and_rejects_nonsense():
    parser = build_parser()
    assert parser.parse_args(["compare", "--eps", "8/255"]).eps == 8 / 255
    assert parser.parse_args(["compare", "--eps", "0.5"]).eps == 0.5
    for bad in ("8/0", "a/255", "8/255/2", "inf"):
        with pytest.raises(SystemExit):
            parser.parse_args(["compare", "--eps", bad])


def test_model_spec_passes_builder_arguments():
    from keras_mwat.cli import parse_model_spec

    assert parse_model_spec("wide_resnet") == ("wide_resnet", {})
    assert parse_model_spec("wide_resnet:depth=10:widen_factor=1") == (
        "wide_resnet", {"depth": 10, "widen_factor": 1})
    with pytest.raises(ValueError, match="depht"):
        parse_model_spec("wide_resnet:depht=10")
    with pytest.raises(ValueError, match="num_classes"):
        parse_model_spec("wide_resnet:num_classes=3")  # comes from the data
    with pytest.raises(ValueError, match="resnet50"):
        parse_model_spec("resnet50")


def test_mixed_precision_scope_builds_float16_models_and_restores_the_policy():
    import argparse

    import keras

    import keras_mwat as km
    from keras_mwat.experiments.runs import _build_scope, _classifier

    args = argparse.Namespace(mixed_precision=True, strategy="mirrored",
                              model="wide_resnet:depth=10:widen_factor=1", init="torch", seed=0)
    data = argparse.Namespace(input_shape=(32, 32, 3), num_classes=10)
    before = keras.mixed_precision.global_policy().name
    with _build_scope(args):
        classifier = _classifier(args, data)
        model = km.PGDATModel(classifier, attack=km.attacks.PGD(eps=8 / 255, step_size=2 / 255))
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert keras.mixed_precision.global_policy().name == before == "float32"
    assert classifier.compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in classifier.trainable_variables)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.distribute_strategy.__class__.__name__ == "MirroredStrategy"
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    y = np.arange(4) % 10
    loss = km.losses.cross_entropy(y, classifier(x))
    assert loss.dtype == "float32" and np.all(np.isfinite(np.asarray(loss)))


@pytest.fixture
def tiny_cifar10(tmp_path):
    """A TFDS folder named ``cifar10`` (CIFAR-10's features) with 64 + 32 random images."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(96, 32, 32, 3), dtype=np.uint8)
    y = np.arange(96, dtype=np.int64) % 10
    features = tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Image(shape=(32, 32, 3)),
        "label": tfds.features.ClassLabel(num_classes=10)})

    def split(name, part):
        ids = [f"{name}_{i}" for i in range(len(y[part]))]
        return tf.data.Dataset.from_tensor_slices(
            {"id": ids, "image": x[part], "label": y[part]})

    tfds.dataset_builders.store_as_tfds_dataset(
        name="cifar10", version="3.0.2", features=features, data_dir=tmp_path / "tfds",
        split_datasets={"train": split("train", slice(0, 64)),
                        "test": split("test", slice(64, 96))})
    return tmp_path / "tfds"


@pytest.mark.integration
def test_documented_cifar_command_runs_and_resumes(tiny_cifar10, tmp_path, capsys):
    (row,) = [argv for argv in _commands() if SMOKE_ROW in " ".join(argv)]
    assert _value(row, "--dataset") == "tfds:cifar10"
    argv = list(row)
    argv[argv.index("--data-dir") + 1] = str(tiny_cifar10)
    argv[argv.index("--resume") + 1] = str(tmp_path / "run")
    argv += _overrides()

    assert main(argv) == 0
    run = tmp_path / "run"
    report = json.loads((run / "compare.json").read_text())
    assert report["recipe"] == "paper-cifar" and report["dataset"] == "tfds:cifar10"
    assert report["train_attack"]["eps"] == pytest.approx(8 / 255)
    assert report["train_attack"]["step_size"] == pytest.approx(2 / 255)  # eps/4
    assert report["model"] == "wide_resnet:depth=10:widen_factor=1"
    assert report["init"] == "torch" and report["strategy"] == "mirrored"
    assert report["mixed_precision"] is False  # --no-mixed-precision of the overrides
    assert report["epochs"] == 1 and report["test_samples"] == 32
    (result,) = report["rows"]
    assert result["method"] == "mwat_trades"
    # 64 train images: the last 10% (6) validate, 58 train, of which a fifth (11) is the
    # meta set (at most a fifth of the training split).
    assert result["meta_samples"] == 11 and result["train_samples"] == 47
    assert 0.0 <= result["worst_case"] <= result["clean"] <= 1.0
    model_file = run / "mwat_trades" / "seed0" / "model.keras"
    stamp = model_file.stat().st_mtime_ns
    capsys.readouterr()

    assert main(argv) == 0  # the same command again: read back, not trained
    assert "mwat_trades, seed 0: done before, read back" in capsys.readouterr().out
    assert model_file.stat().st_mtime_ns == stamp
    assert json.loads((run / "compare.json").read_text())["rows"] == report["rows"]
