"""The paper's tables as data, checked against the numbers and sums its text states."""

import math

import pytest

from keras_mwat.experiments import paper_tables
from keras_mwat.experiments.paper_tables import CELLS, PaperResult, get_cell, paper_result


def test_every_table_has_its_rows_and_columns():
    tables = {}
    for cell in CELLS.values():
        tables.setdefault(cell.table, []).append(cell)
    assert [len(tables[t]) for t in (1, 2, 3)] == [8, 4, 1]
    assert all(list(c.results) == ["plain", "pgd_at", "gairat", "wmmr", "mail", "mwat"]
               for c in tables[1])
    assert all(len(c.results) == 8 and "mwat_trades" in c.results for c in tables[2])
    assert list(tables[3][0].results) == ["mwat_trades", "pgd_at", "trades", "trades:beta=1.0",
                                          "gairat", "wmmr", "mail"]


def test_spot_checks_against_the_paper():
    assert paper_result("fmnist-tinycnn-linf0.1", "mwat") == PaperResult(86.6, 77.4, 68.8)
    assert paper_result("fmnist-tinycnn-linf0.1", "pgd_at") == PaperResult(86.4, 70.1, 68.3)
    assert paper_result("mnist-tinycnn-l2-0.3", "plain") == PaperResult(99.2, 96.9, 36.4)
    assert paper_result("fmnist-fc1-l2-0.3", "mail") == PaperResult(90.6, 79.3, 75.9)
    # the paper's own settings of MAIL and WMMR read their columns
    assert paper_result("fmnist-fc1-l2-0.3", "mail:bias=0.05:slope=5") == PaperResult(
        90.6, 79.3, 75.9)
    assert paper_result("fmnist-tinycnn-linf0.1", "wmmr+alpha=0.1") == PaperResult(
        86.2, 77.3, 64.1)
    assert paper_result("fmnist-tinycnn-linf0.1", "wmmr:alpha=2") is None
    assert paper_result("cifar10-smallcnn-linf2/255", "mwat_nonparametric") == PaperResult(
        79.7, 60.0, 47.3)
    assert paper_result("cifar10-wrn32-10-linf8/255", "mwat_trades") == PaperResult(
        86.1, 58.9, 53.6)
    assert paper_result("cifar100-wrn32-10-linf8/255", "trades:beta=1") == PaperResult(
        62.4, 25.3, 22.2)
    assert paper_result("cifar100-wrn32-10-linf8/255", "trades") == PaperResult(56.5, 30.9, 26.9)
    # The digit the paper's text lost ("?8.8") is unknown, the rest of the entry is not.
    assert paper_result("mnist-fc1-l2-0.3", "pgd_at") == PaperResult(None, 97.4, 95.3)
    assert paper_result("fmnist-tinycnn-linf0.1", "trades") is None  # not in Table 1


def test_bilaw_minus_at_under_autoattack_matches_the_papers_sums():
    # The text: "Under AA, BiLAW minus AT on MNIST: -2.0, -0.7, +1.2, -0.9; on F-MNIST:
    # +0.5, -1.3, +0.4, +0.1" (rows in Table 1's order).
    rows = [c for c in CELLS.values() if c.table == 1]
    gaps = [round(c.results["mwat"].aa - c.results["pgd_at"].aa, 1) for c in rows]
    assert gaps == [-2.0, -0.7, 1.2, -0.9, 0.5, -1.3, 0.4, 0.1]


def test_drops_and_trades_gaps_match_the_papers_reading():
    wrn = get_cell("cifar10-wrn32-10-linf8/255").results
    assert wrn["mwat"].drop == pytest.approx(-7.2) and wrn["pgd_at"].drop == pytest.approx(-4.0)
    # "BiLAW-TRADES beats TRADES in every column (+0.9 to +4.7)" under AA on CIFAR-10.
    gaps = [c.results["mwat_trades"].aa - c.results["trades"].aa
            for c in CELLS.values() if c.table == 2]
    assert min(gaps) == pytest.approx(0.9) and max(gaps) == pytest.approx(4.7)
    assert PaperResult(None, 97.4, 95.3).drop == pytest.approx(-2.1)
    assert PaperResult(99.0, None, 95.3).drop is None


def test_cells_know_their_threat_model_and_lookups_are_forgiving():
    cell = get_cell("FMNIST-tiny_cnn-linf-0.1")
    assert cell.cell == "fmnist-tinycnn-linf0.1" and cell.dataset == "fashion_mnist"
    assert (cell.model, cell.norm, cell.eps) == ("tiny_cnn", "linf", 0.1)
    assert get_cell("mnist-fc1-l20.3").norm == "l2"
    assert math.isclose(get_cell("cifar10-smallcnn-linf8/255").eps, 0.0314, abs_tol=1e-4)
    with pytest.raises(ValueError, match="unknown paper cell 'svhn'"):
        get_cell("svhn")


def test_method_keys_match_specs_and_run_folders():
    assert paper_tables.method_key("trades:beta=1") == "trades:beta=1.0"
    assert paper_tables.method_key("trades+beta=1") == "trades:beta=1.0"
    assert paper_tables.method_key("mwat:b=2:a=x") == "mwat:a=x:b=2.0"
    assert paper_tables.method_key("pgd_at") == "pgd_at"
    with pytest.raises(ValueError, match="text='1/2'"):
        PaperResult.parse("1/2")
