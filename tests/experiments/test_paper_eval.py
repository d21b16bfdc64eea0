"""The paper's evaluation protocol on a saved run, through ``keras-mwat paper-eval``."""

import json
import subprocess

import keras
import pytest

import keras_mwat as km
from keras_mwat.cli import main
from keras_mwat.experiments import paper_eval
from keras_mwat.experiments.provenance import code_version, write_atomically


def test_paper_pgd20_is_the_papers_setting():
    attack = paper_eval.paper_pgd20(0.1, seed=3)
    config = attack.get_config()
    assert config["step_size"] == pytest.approx(0.025)  # eps / 4, not the CLI's 2.5 eps / 20
    assert (config["num_steps"], config["num_restarts"]) == (20, 1)
    assert config["random_start"] and config["init"] == "uniform" and config["seed"] == 3
    assert paper_eval.paper_pgd20(0.3, norm="l2").get_config()["norm"] == "l2"


def test_write_atomically_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "paper_eval_last.json"
    write_atomically(target, "old")
    with pytest.raises(TypeError):
        write_atomically(target, 12345)  # fails while writing
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A compare directory: one finished PGD-AT run (a clean-trained MLP, last checkpoint
    only) and one run still training."""
    data = km.data.load_embedded(seed=0)
    keras.utils.set_random_seed(0)
    classifier = km.zoo.mlp(input_shape=(28, 28, 1), num_classes=10, hidden_units=(32,))
    classifier.compile(optimizer=keras.optimizers.Adam(3e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(*data.train, epochs=2, batch_size=128, verbose=0)
    attack = km.attacks.PGD(eps=0.1, step_size=0.05, num_steps=2)
    model = km.PGDATModel(classifier, attack=attack, seed=0)
    model.compile(optimizer="adam")
    model(data.x_test[:2])
    root = tmp_path_factory.mktemp("compare")
    run = root / "pgd_at" / "seed0"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    (run / "result.json").write_text(json.dumps({"method": "pgd_at", "seed": 0}))
    (root / "mwat" / "seed0").mkdir(parents=True)
    model.save(root / "mwat" / "seed0" / "model.keras")  # no result.json: not finished
    return root, classifier, data


@pytest.mark.integration
def test_paper_eval_writes_the_protocol_and_resumes(saved_run, capsys):
    root, classifier, data = saved_run
    arguments = ["paper-eval", str(root), "--dataset", "embedded", "--test-subset", "40",
                 "--n-aa", "8", "--which", "last,best"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "pgd_at/seed0 best: no best.keras, skipped" in out
    run = root / "pgd_at" / "seed0"
    assert sorted(p.name for p in run.iterdir()) == ["model.keras", "paper_eval_last.json",
                                                      "result.json"]
    assert not list((root / "mwat" / "seed0").glob("paper_eval_*"))  # unfinished: left alone
    record = json.loads((run / "paper_eval_last.json").read_text())
    assert (record["method"], record["seed"], record["checkpoint"]) == ("pgd_at", 0, "last")
    assert record["eps"] == pytest.approx(0.1) and record["norm"] == "linf"  # the model's own
    assert (record["n_pgd20"], record["n_aa"]) == (40, 8)
    assert record["data"]["dataset"] == "embedded" and record["data"]["aa_points"] == "first 8"
    (pgd,) = record["pgd20_report"]["attacks"]
    assert pgd["config"]["step_size"] == pytest.approx(0.025) and pgd["config"]["num_steps"] == 20
    assert [a["name"] for a in record["aa_report"]["attacks"]] == [
        "APGD-CE", "APGD-T", "FAB-T", "Square"]
    # Clean accuracies on all 40 and on the first 8, recomputed independently.
    x, y = data.x_test[:40], data.y_test[:40]
    correct = classifier.predict(x, verbose=0).argmax(axis=1) == y
    assert record["clean"] == pytest.approx(correct.mean())
    assert record["aa_clean"] == pytest.approx(correct[:8].mean())
    assert 0.0 <= record["aa"] <= record["aa_clean"]
    assert 0.0 <= record["pgd20"] <= record["clean"]
    assert record["pgd20_on_aa_points"] <= record["aa_clean"]
    assert float(record["pgd20_on_aa_points"] * 8).is_integer()
    assert set(record["aa_per_attack"]) == {"APGD-CE", "APGD-T", "FAB-T", "Square"}
    assert record["aa_per_attack"]["Square"] == pytest.approx(record["aa"])
    assert len(record["model_sha256"]) == 64 and record["duration_seconds"] > 0
    assert record["code"] == code_version()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=paper_eval.__file__.rsplit("/", 3)[0])
    if head.returncode == 0:
        assert record["code"]["commit"] == head.stdout.strip()
    # A second run skips what is there and rewrites nothing.
    before = (run / "paper_eval_last.json").read_bytes()
    assert main(arguments) == 0
    assert "pgd_at/seed0 last: paper_eval_last.json exists, skipped" in capsys.readouterr().out
    assert (run / "paper_eval_last.json").read_bytes() == before
    assert not list(root.rglob("*.tmp"))


def test_paper_eval_needs_a_dataset_or_compare_json(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--dataset is required"):
        main(["paper-eval", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["paper-eval", str(tmp_path / "missing"), "--dataset", "embedded"])
    with pytest.raises(SystemExit):
        main(["paper-eval", str(tmp_path), "--which", "first"])
    assert "expected last, best or last,best" in capsys.readouterr().err


def test_compare_records_the_code_commit_in_its_settings():
    from keras_mwat.cli import build_parser
    from keras_mwat.experiments.runs import _resolve_defaults, _settings

    args = build_parser().parse_args(["compare", "--methods", "pgd_at"])
    _resolve_defaults(args)
    settings = _settings(args, km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=2))
    assert settings["code"] == code_version()
    assert set(settings["code"]) == {"commit", "dirty", "keras_mwat"}
    assert settings["code"]["keras_mwat"] == km.__version__
