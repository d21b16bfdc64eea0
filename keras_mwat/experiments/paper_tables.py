"""The paper's Tables 1-3 as data: clean / PGD-20 / AutoAttack accuracy in percent.

Holtz, Weng & Mishne (2022), "Learning Sample Reweighting for Accuracy and Adversarial
Robustness": Table 1 (MNIST and Fashion-MNIST, tiny-CNN and FC1, L-inf 0.1 and L2 0.3),
Table 2 (CIFAR-10, small-CNN and WRN-32-10, L-inf 2/255 and 8/255) and Table 3 (CIFAR-100,
WRN-32-10, L-inf 8/255). The paper calls MWAT BiLAW; its columns are keyed here by this
library's method names (``keras_mwat.methods.METHODS``):

=============================  ==========================
paper                          key
=============================  ==========================
plain (no attack)              ``plain``
AT (PGD-AT)                    ``pgd_at``
TRADES, TRADES(6)              ``trades``
TRADES(1) (Table 3)            ``trades:beta=1.0``
GAIRAT, WMMR, MAIL             ``gairat``, ``wmmr``, ``mail``
non-parametric (Table 2)       ``mwat_nonparametric``
BiLAW                          ``mwat``
BiLAW-TRADES                   ``mwat_trades``
=============================  ==========================

``trades:beta=1.0`` is a ``keras-mwat compare --methods`` spec (TRADES with 1/λ = 1).

Cell ids are ``<data>-<model>-<threat>``: data ``mnist``, ``fmnist``, ``cifar10``,
``cifar100``; model ``tinycnn``, ``fc1``, ``smallcnn``, ``wrn32-10``; threat the norm and
the radius as the paper writes it: ``linf0.1``, ``l2-0.3`` (a hyphen after ``l2``, so that
the radius does not read as 20.3), ``linf2/255``, ``linf8/255``. Lookups ignore case,
hyphens, underscores and spaces (``"fmnist-tiny_cnn-linf-0.1"`` finds
``"fmnist-tinycnn-linf0.1"``).

One number is unknown: AT's clean accuracy on MNIST, FC1, L2 0.3 lost a digit in the text
("?8.8"); it is ``None``. The paper reports single runs, no error bars.

Example:

```python
from keras_mwat.experiments import paper_tables

cell = paper_tables.get_cell("fmnist-tinycnn-linf0.1")
cell.eps, cell.results["mwat"].aa        # (0.1, 68.8)
```
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Mapping

__all__ = [
    "CELLS",
    "PAPER_NAMES",
    "PaperCell",
    "PaperResult",
    "get_cell",
    "method_key",
    "paper_result",
]

#: The paper's column names of this library's method keys.
PAPER_NAMES = {
    "plain": "plain",
    "pgd_at": "AT",
    "trades": "TRADES",
    "trades:beta=1.0": "TRADES(1)",
    "gairat": "GAIRAT",
    "wmmr": "WMMR",
    "mail": "MAIL",
    "mwat_nonparametric": "non-param.",
    "mwat": "BiLAW",
    "mwat_trades": "BiLAW-TRADES",
}


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """One method's numbers in one cell of the paper, in percent (None: unknown).

    Attributes:
        clean: Clean test accuracy.
        pgd20: Accuracy under PGD-20.
        aa: Accuracy under AutoAttack.

    Example:

    ```python
    PaperResult.parse("86.4/70.1/68.3")   # PaperResult(clean=86.4, pgd20=70.1, aa=68.3)
    ```
    """

    clean: float | None
    pgd20: float | None
    aa: float | None

    @classmethod
    def parse(cls, text: str) -> PaperResult:
        """Reads ``"clean/pgd20/aa"`` as the paper prints it; a lost digit (``?``) is None."""
        parts = text.split("/")
        if len(parts) != 3:
            raise ValueError(f"expected 'clean/pgd20/aa', got text={text!r}")
        values = [None if "?" in part else float(part) for part in parts]
        return cls(*values)

    @property
    def drop(self) -> float | None:
        """PGD-20 to AutoAttack: ``aa - pgd20`` in points (negative: AA is stronger)."""
        if self.pgd20 is None or self.aa is None:
            return None
        return round(self.aa - self.pgd20, 10)


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """One row of a paper table: a data set, a model, a threat model and each method's
    numbers.

    Attributes:
        cell: The cell id, e.g. ``"fmnist-tinycnn-linf0.1"``.
        table: The paper's table (1, 2 or 3).
        label: The row as the paper names it.
        dataset: ``keras-mwat --dataset`` name (``"mnist"``, ``"fashion_mnist"``,
            ``"cifar10"``, ``"cifar100"``).
        model: ``km.zoo`` builder (``"tiny_cnn"``, ``"fc1"``, ``"cifar_small_cnn"``,
            ``"wide_resnet"``).
        norm: ``"linf"`` or ``"l2"``.
        eps: The radius (2/255 and 8/255 for CIFAR, which the paper also writes as 0.0078
            and 0.031).
        results: ``PaperResult`` by method key, in the paper's column order.

    Example:

    ```python
    get_cell("cifar10-wrn32-10-linf8/255").results["mwat_trades"].aa   # 53.6
    ```
    """

    cell: str
    table: int
    label: str
    dataset: str
    model: str
    norm: str
    eps: float
    results: Mapping[str, PaperResult]


_TABLE1_METHODS = ("plain", "pgd_at", "gairat", "wmmr", "mail", "mwat")
_TABLE1 = (  # cell, label, dataset, model, norm, eps, then the row as printed
    ("mnist-tinycnn-linf0.1", "MNIST tiny-CNN L∞ 0.1", "mnist", "tiny_cnn", "linf", 0.1,
     "99.1/21.7/9.1 99.0/95.9/93.7 99.1/96.7/91.1 98.8/94.3/90.2 98.6/95.1/91.4 "
     "99.2/96.7/91.7"),
    ("mnist-tinycnn-l2-0.3", "MNIST tiny-CNN L2 0.3", "mnist", "tiny_cnn", "l2", 0.3,
     "99.2/96.9/36.4 99.1/98.2/96.1 99.2/98.8/90.3 99.0/98.5/91.7 98.7/98.6/95.4 "
     "99.2/98.9/95.4"),
    ("mnist-fc1-linf0.1", "MNIST FC1 L∞ 0.1", "mnist", "fc1", "linf", 0.1,
     "98.4/1.7/0.0 98.4/92.9/90.4 99.0/93.2/89.7 98.9/92.8/89.4 98.4/93.1/91.3 "
     "99.1/93.1/91.6"),
    ("mnist-fc1-l2-0.3", "MNIST FC1 L2 0.3", "mnist", "fc1", "l2", 0.3,
     "98.3/90.3/16.1 ?8.8/97.4/95.3 98.8/97.6/89.2 98.2/97.2/89.8 98.1/97.4/94.2 "
     "98.6/97.6/94.4"),
    ("fmnist-tinycnn-linf0.1", "F-MNIST tiny-CNN L∞ 0.1", "fashion_mnist", "tiny_cnn",
     "linf", 0.1,
     "89.6/1.5/0.0 86.4/70.1/68.3 86.4/77.6/64.3 86.2/77.3/64.1 86.4/76.9/68.6 "
     "86.6/77.4/68.8"),
    ("fmnist-tinycnn-l2-0.3", "F-MNIST tiny-CNN L2 0.3", "fashion_mnist", "tiny_cnn", "l2",
     0.3,
     "89.7/42.9/0.0 91.9/79.6/77.9 92.3/81.1/70.3 92.1/80.6/71.4 92.2/80.5/76.2 "
     "92.4/81.3/76.6"),
    ("fmnist-fc1-linf0.1", "F-MNIST FC1 L∞ 0.1", "fashion_mnist", "fc1", "linf", 0.1,
     "98.5/0.0/0.0 87.0/68.7/66.3 87.1/70.2/61.4 86.9/68.4/61.3 90.1/69.3/66.4 "
     "87.3/70.6/66.7"),
    ("fmnist-fc1-l2-0.3", "F-MNIST FC1 L2 0.3", "fashion_mnist", "fc1", "l2", 0.3,
     "89.3/57.2/0.0 89.8/80.1/76.0 91.1/81.0/70.4 91.1/78.4/70.9 90.6/79.3/75.9 "
     "91.4/80.9/76.1"),
)
_TABLE2_METHODS = ("pgd_at", "trades", "gairat", "wmmr", "mail", "mwat_nonparametric", "mwat",
                   "mwat_trades")
_TABLE2 = (
    ("cifar10-smallcnn-linf2/255", "CIFAR-10 small-CNN L∞ 2/255", "cifar10",
     "cifar_small_cnn", "linf", 2 / 255,
     "78.7/58.7/56.6 79.2/58.9/56.8 79.0/54.7/48.1 78.7/58.9/51.2 76.8/64.3/59.2 "
     "79.7/60.0/47.3 79.7/63.6/56.7 79.1/64.8/61.5"),
    ("cifar10-smallcnn-linf8/255", "CIFAR-10 small-CNN L∞ 8/255", "cifar10",
     "cifar_small_cnn", "linf", 8 / 255,
     "79.6/45.6/42.9 78.9/54.8/51.7 79.0/55.6/40.7 81.7/49.1/39.1 81.9/53.3/40.6 "
     "81.3/52.2/40.6 80.4/55.4/45.3 80.2/56.2/52.6"),
    ("cifar10-wrn32-10-linf2/255", "CIFAR-10 WRN-32-10 L∞ 2/255", "cifar10", "wide_resnet",
     "linf", 2 / 255,
     "85.9/71.3/69.5 84.6/73.9/73.1 86.4/73.6/63.1 85.9/70.9/67.4 84.3/74.1/73.7 "
     "86.4/73.7/62.3 87.1/74.2/71.3 86.2/74.8/74.2"),
    ("cifar10-wrn32-10-linf8/255", "CIFAR-10 WRN-32-10 L∞ 8/255", "cifar10", "wide_resnet",
     "linf", 8 / 255,
     "85.9/52.0/48.0 83.1/53.9/52.1 84.7/56.8/43.4 80.6/49.5/40.6 83.2/53.7/52.0 "
     "86.6/52.8/42.9 87.4/58.6/51.4 86.1/58.9/53.6"),
)
_TABLE3_METHODS = ("mwat_trades", "pgd_at", "trades", "trades:beta=1.0", "gairat", "wmmr",
                   "mail")
_TABLE3 = (
    ("cifar100-wrn32-10-linf8/255", "CIFAR-100 WRN-32-10 L∞ 8/255", "cifar100",
     "wide_resnet", "linf", 8 / 255,
     "62.8/31.4/27.2 57.9/28.9/24.7 56.5/30.9/26.9 62.4/25.3/22.2 60.2/30.4/22.6 "
     "56.1/29.7/25.8 62.4/30.9/26.8"),
)


def _build() -> dict[str, PaperCell]:
    cells = {}
    for table, methods, rows in ((1, _TABLE1_METHODS, _TABLE1), (2, _TABLE2_METHODS, _TABLE2),
                                 (3, _TABLE3_METHODS, _TABLE3)):
        for cell, label, dataset, model, norm, eps, text in rows:
            values = text.split()
            if len(values) != len(methods):
                raise AssertionError(f"table {table}, {cell}: {len(values)} entries for "
                                     f"{len(methods)} methods")
            results = {m: PaperResult.parse(v) for m, v in zip(methods, values)}
            cells[cell] = PaperCell(cell, table, label, dataset, model, norm, eps, results)
    return cells


#: Every cell of Tables 1-3, by cell id, in the paper's order.
CELLS: dict[str, PaperCell] = _build()


def _squash(text: str) -> str:
    return re.sub(r"[-_\s]", "", str(text).lower())


def get_cell(cell: str) -> PaperCell:
    """The paper's row ``cell`` (a cell id; case, hyphens, underscores are ignored).

    Raises:
        ValueError: If ``cell`` is no cell of Tables 1-3; the message lists them.

    Example:

    ```python
    get_cell("mnist-tinycnn-l2-0.3").results["pgd_at"]   # PaperResult(99.1, 98.2, 96.1)
    ```
    """
    wanted = _squash(cell)
    for key, value in CELLS.items():
        if _squash(key) == wanted:
            return value
    raise ValueError(f"unknown paper cell {cell!r}; choose from {list(CELLS)}")


def method_key(spec: str) -> str:
    """The canonical form of a method spec (``NAME[:key=value...]``): options sorted,
    values as Python literals, so ``"trades:beta=1"`` and ``"trades:beta=1.0"`` match.

    Example:

    ```python
    method_key("trades:beta=1")   # 'trades:beta=1.0'
    method_key("trades+beta=1")   # 'trades:beta=1.0' (a run directory name)
    ```
    """
    name, *assignments = str(spec).replace("+", ":").split(":")
    options = []
    for assignment in assignments:
        key, _, text = assignment.partition("=")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        options.append(f"{key.strip()}={value}")
    return ":".join([name.strip(), *sorted(options)])


def paper_result(cell: str, method: str) -> PaperResult | None:
    """The paper's numbers of ``method`` (a method spec) in ``cell``, or None if the paper
    did not run it there.

    Example:

    ```python
    paper_result("fmnist-tinycnn-linf0.1", "mwat")     # PaperResult(86.6, 77.4, 68.8)
    paper_result("fmnist-tinycnn-linf0.1", "trades")   # None: not in Table 1
    paper_result("fmnist-tinycnn-linf0.1", "mail:slope=5:bias=0.05")  # the MAIL column
    ```
    """
    key = method_key(method)
    return get_cell(cell).results.get(_PAPER_SETTING_COLUMNS.get(key, key))


#: The paper's settings of the peers whose defaults here differ (MAIL's γ = 5, β = 0.05;
#: WMMR's α = 0.1): these compare specs read the paper's MAIL and WMMR columns too.
PAPER_SPECS = {"mail": "mail:slope=5:bias=0.05", "wmmr": "wmmr:alpha=0.1"}
_PAPER_SETTING_COLUMNS = {method_key(spec): name for name, spec in PAPER_SPECS.items()}
