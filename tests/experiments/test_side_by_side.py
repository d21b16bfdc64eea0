"""The side-by-side report on a hand-made compare directory with known answers."""

import json

import numpy as np
import pytest

from keras_mwat.experiments import side_by_side

# (method, seed) -> {checkpoint: (clean, pgd20, aa, pgd20 on the AA points)}, fractions.
EVALUATED = {
    ("pgd_at", 0): {"last": (0.860, 0.700, 0.680, 0.710), "best": (0.850, 0.710, 0.690, 0.720)},
    ("pgd_at", 1): {"last": (0.865, 0.710, 0.690, 0.720), "best": (0.860, 0.720, 0.700, 0.730)},
    ("pgd_at", 2): {"last": (0.870, 0.720, 0.700, 0.730)},
    ("mwat", 0): {"last": (0.870, 0.770, 0.690, 0.780), "best": (0.860, 0.760, 0.700, 0.770)},
    ("mwat", 1): {"last": (0.860, 0.760, 0.690, 0.770)},
    ("mwat", 2): {"last": (0.880, 0.780, 0.720, 0.790)},
    ("trades", 0): {"last": (0.840, 0.740, 0.700, 0.750)},
}


def _write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def results(tmp_path):
    for (method, seed), checkpoints in EVALUATED.items():
        run = tmp_path / method / f"seed{seed}"
        clean, pgd20 = checkpoints["last"][:2]
        _write(run / "result.json", {  # what compare's own table reads, too
            "method": method, "seed": seed, "clean": clean, "PGD-20": pgd20,
            "worst_case": pgd20, "train_seconds": 1.0,
            "robustness": {"attacks": [{"name": "PGD-20", "config": {"num_steps": 20}}]},
            "code": {"commit": "a" * 40, "dirty": False}})
        for checkpoint, (clean, pgd20, aa, pgd_first) in checkpoints.items():
            _write(run / f"paper_eval_{checkpoint}.json", {
                "clean": clean, "pgd20": pgd20, "aa": aa, "pgd20_on_aa_points": pgd_first,
                "n_pgd20": 10000, "n_aa": 1000, "best_epoch": 91 if checkpoint == "best" else None,
                "code": {"commit": "b" * 40, "dirty": False}})
    _write(tmp_path / "gairat" / "seed0" / "history.csv", {})  # still training
    _write(tmp_path / "wmmr" / "seed0" / "result.json", {"method": "wmmr", "seed": 0})
    return tmp_path


def _tables(text):
    """Each Markdown table of ``text`` as {first cell: {header: cell}}."""
    tables, current, header = [], None, None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if current is None:
            current, header = {}, cells
            tables.append(current)
        elif not set(line) <= set("|-"):
            current[cells[0]] = dict(zip(header, cells))
    return tables


def test_values_and_paired_differences_by_seed(results):
    runs = side_by_side.load_runs(results)
    assert side_by_side.seed_values(runs, "mwat", "last", "aa") == pytest.approx(
        {0: 69.0, 1: 69.0, 2: 72.0})
    paired = side_by_side.paired_differences(runs, "mwat", "pgd_at", "last", "aa")
    assert paired == pytest.approx({0: 1.0, 1: 0.0, 2: 2.0})
    assert side_by_side.mean_std(paired.values()) == pytest.approx((1.0, 1.0))
    # Only the seeds both have are paired.
    assert side_by_side.paired_differences(runs, "mwat", "trades", "last", "clean") == (
        pytest.approx({0: 3.0}))
    assert side_by_side.seed_values(runs, "pgd_at", "best", "drop") == pytest.approx(
        {0: -3.0, 1: -3.0})
    assert side_by_side.mean_std([5.0]) == (5.0, None)


def test_report_puts_ours_next_to_the_paper(results):
    text = side_by_side.report(results, "fmnist-tinycnn-linf0.1")
    tables = _tables(text)
    assert len(tables) == 8  # (main, vs pgd_at, vs trades) x 2 checkpoints, drop, best-last
    last, last_at, last_trades, best, best_at, best_trades, drop, best_last = tables
    mwat = last["mwat"]
    aa = np.array([69.0, 69.0, 72.0])
    assert mwat["seeds"] == "0,1,2" and mwat["paper's name"] == "BiLAW"
    assert mwat["AA: ours"] == f"{aa.mean():.2f} ± {aa.std(ddof=1):.2f}" == "70.00 ± 1.73"
    assert mwat["AA: paper"] == "68.8" and mwat["AA: Δ"] == "+1.20 ± 1.73"
    assert mwat["clean: paper"] == "86.6" and mwat["PGD-20: paper"] == "77.4"
    assert last["pgd_at"]["clean: ours"] == "86.50 ± 0.50"
    # Not in the paper's Table 1; one seed: no spread.
    assert last["trades"]["AA: paper"] == "n/a" and last["trades"]["AA: ours"] == "70.00"
    # Cells not there yet say why.
    assert last["gairat"]["AA: ours"] == "training"
    assert last["wmmr"]["AA: ours"] == "not evaluated"
    assert last["mail"]["AA: ours"] == "not run" and last["mail"]["AA: paper"] == "68.6"
    assert last["plain"]["AA: Δ"] == "–"
    # Paired against PGD-AT: per seed, then mean ± std; the paper's AT column next to it.
    assert last_at["mwat"]["AA: ours"] == "+1.00 ± 1.00"
    assert last_at["mwat"]["AA: paper"] == "+0.5" and last_at["mwat"]["paired seeds"] == "0,1,2"
    assert last_at["mwat"]["PGD-20: ours"] == "+6.00 ± 1.00"  # +7, +5, +6
    assert last_at["mwat"]["PGD-20: paper"] == "+7.3"
    assert "pgd_at" not in last_at
    assert last_trades["mwat"]["clean: ours"] == "+3.00" and last_trades["mwat"]["clean: paper"] == (
        "n/a")
    assert best_at["mwat"]["AA: ours"] == "+1.00" and best_at["mwat"]["paired seeds"] == "0"
    assert best["mwat"]["seeds"] == "0" and best["mail"]["clean: ours"] == "not run"
    # PGD-20 -> AA drop on the same points, ours and the paper's, and against PGD-AT's.
    assert drop["mwat"]["ours, last"] == "-8.00 ± 1.00"  # drops -9, -8, -7
    assert drop["pgd_at"]["ours, last"] == "-3.00 ± 0.00"
    assert drop["mwat"]["paper"] == "-8.6" and drop["pgd_at"]["paper"] == "-1.8"
    assert drop["mwat"]["ours − pgd_at's (paired, last)"] == "-5.00 ± 1.00"  # -6, -5, -4
    assert drop["mwat"]["paper − AT's"] == "-6.8"
    # Best against last, paired by seed.
    assert best_last["pgd_at"]["paired seeds"] == "0,1"
    assert best_last["pgd_at"]["AA: best − last"] == "+1.00 ± 0.00"
    assert best_last["pgd_at"]["clean: best − last"] == "-0.75 ± 0.35"
    assert best_last["mwat"]["best epoch (1-based)"] == "92"
    assert "Code of the evaluations: bbbbbbbbbbbb" in text and "aaaaaaaaaaaa" in text
    assert "`--report-only --paper-cell fmnist-tinycnn-linf0.1` added" in text
    assert "aaaaaaaaaaaa, unknown (unknown: trained before" in text  # wmmr has no "code"


def test_a_reference_neither_run_nor_in_the_paper_gets_one_line(results):
    import shutil

    shutil.rmtree(results / "trades")
    text = side_by_side.report(results, "fmnist-tinycnn-linf0.1")
    assert text.count("No trades run in this directory and no TRADES column") == 2
    assert len(_tables(text)) == 6
    assert "Paired difference against pgd_at (best" in text


def test_report_rejects_an_unknown_cell(results):
    with pytest.raises(ValueError, match="unknown paper cell 'cifar-11'"):
        side_by_side.report(results, "cifar-11")


def test_compare_report_only_writes_the_side_by_side_file(results, capsys):
    from keras_mwat.cli import main

    main(["compare", "--resume", str(results), "--report-only", "--methods", "pgd_at,mwat",
          "--seeds", "0,1,2", "--paper-cell", "F-MNIST-tiny_cnn-linf0.1", "--verbose", "0"])
    written = (results / "side_by_side.md").read_text()
    assert written == side_by_side.report(results, "fmnist-tinycnn-linf0.1")
    assert written in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["compare", "--resume", str(results), "--report-only", "--paper-cell", "svhn"])
    assert "argument --paper-cell: unknown paper cell 'svhn'" in capsys.readouterr().err


def test_paper_columns_take_a_variant_only_when_unambiguous():
    paper = ["pgd_at", "trades", "trades:beta=1.0", "gairat", "mail", "wmmr"]
    columns = side_by_side.paper_columns(
        ["pgd_at", "gairat:reweight_start_epoch=50.0", "mail:bias=0.05:slope=5.0",
         "mail:bias=0.1:slope=5.0", "wmmr", "wmmr:alpha=0.1", "trades:beta=1.0", "dyn"], paper)
    assert columns == {"pgd_at": "pgd_at", "trades:beta=1.0": "trades:beta=1.0",
                       "wmmr": "wmmr", "gairat:reweight_start_epoch=50.0": "gairat"}
    # Two MAIL variants: neither is the paper's MAIL; the bare wmmr run keeps its column;
    # TRADES(1) never stands in for TRADES(6).


def _move(results, method, target):
    import shutil

    (target / method).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(results / method), str(target / method))


def test_runs_of_several_directories_and_a_variant_in_the_papers_column(results, tmp_path_factory):
    other = tmp_path_factory.mktemp("lr0.01")
    _move(results, "trades", other)
    _write(other / "compare.json", {"optimizer": {"name": "sgd", "learning_rate": 0.01},
                                    "dataset": "fashion_mnist", "train_samples": 59000,
                                    "test_samples": 10000, "epochs": 100})
    # GAIRAT with our burn-in stands in the paper's GAIRAT column.
    variant = results / "gairat+reweight_start_epoch=50" / "seed0"
    _move(results, "gairat", tmp_path_factory.mktemp("collapsed"))
    _write(variant / "result.json", {"method": "gairat:reweight_start_epoch=50", "seed": 0})
    _write(variant / "paper_eval_last.json", {
        "clean": 0.85, "pgd20": 0.75, "aa": 0.66, "pgd20_on_aa_points": 0.76,
        "n_pgd20": 10000, "n_aa": 1000, "code": {"commit": "b" * 40}})
    text = side_by_side.report([results, other], "fmnist-tinycnn-linf0.1")
    last, last_at, last_trades = _tables(text)[:3]
    gairat = last["gairat:reweight_start_epoch=50.0"]
    assert gairat["paper's name"] == "GAIRAT" and gairat["AA: paper"] == "64.3"
    assert gairat["AA: ours"] == "66.00" and gairat["AA: Δ"] == "+1.70"
    assert "gairat" not in last  # the paper's column is filled by the variant
    assert last["trades"]["AA: ours"] == "70.00"
    assert last_trades["mwat"]["clean: ours"] == "+3.00"  # paired across directories
    assert (f"- `{other}` (data fashion_mnist, 59000 training and 10000 test images, 100 "
            "epochs, sgd learning rate 0.01): trades") in text
    assert (f"- `{results}` (settings: no compare.json yet): "
            "gairat:reweight_start_epoch=50.0, mwat, pgd_at, wmmr") in text
    assert f"--with-runs {other}` added" in text
    # The same method and seed in two directories is refused, naming both.
    _write(other / "pgd_at" / "seed1" / "result.json", {"method": "pgd_at", "seed": 1})
    with pytest.raises(ValueError, match=r"'pgd_at', seed 1 is in two directories"):
        side_by_side.report([results, other], "fmnist-tinycnn-linf0.1")


def test_compare_report_only_with_runs_of_another_directory(results, tmp_path_factory, capsys):
    from keras_mwat.cli import main

    other = tmp_path_factory.mktemp("lr0.01")
    _move(results, "trades", other)
    args = ["compare", "--resume", str(results), "--report-only", "--methods", "pgd_at,mwat",
            "--seeds", "0,1,2", "--verbose", "0"]
    main([*args, "--paper-cell", "fmnist-tinycnn-linf0.1", "--with-runs", str(other)])
    written = (results / "side_by_side.md").read_text()
    assert written == side_by_side.report([results, other], "fmnist-tinycnn-linf0.1")
    assert "| trades |" in written
    capsys.readouterr()
    with pytest.raises(SystemExit, match="--with-runs needs --paper-cell"):
        main([*args, "--with-runs", str(other)])
    with pytest.raises(SystemExit, match="--with-runs .*missing: no such directory"):
        main([*args, "--paper-cell", "fmnist-tinycnn-linf0.1", "--with-runs",
              str(other / "missing")])

