"""The tutorial notebook: committed, in sync with its jupytext source, and it runs.

``notebooks/tutorial.ipynb`` is paired with ``notebooks/tutorial.py`` (jupytext percent
format). The first test checks that the two hold the same cells; the second executes the
committed ``.ipynb`` in a Jupyter kernel with its tiny settings (``TINY = True``, about a
minute on 2 cores) and checks the numbers its last cell prints. Both need the ``notebook``
extra (``pip install -e ".[notebook]"``, included in ``dev``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IPYNB = ROOT / "notebooks" / "tutorial.ipynb"
SOURCE = ROOT / "notebooks" / "tutorial.py"
NUM_CLASSES = 10  # the embedded MNIST digits
TIMEOUT = 600
FIGURES = {"digits", "training_curves", "weight_vs_margin", "adversarial_examples",
           "accuracy"}
SYNC_HINT = "run `jupytext --sync notebooks/tutorial.py` and commit both files"


def cells(notebook) -> list[tuple[str, str, list]]:
    """Each cell's type, source and tags: what the pairing must keep equal."""
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", [])))
            for cell in notebook.cells]


def test_committed_notebook_is_in_sync_with_its_jupytext_source():
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    committed = nbformat.read(IPYNB, as_version=4)
    nbformat.validate(committed)
    expected, actual = cells(jupytext.read(SOURCE)), cells(committed)
    for index, (want, got) in enumerate(zip(expected, actual)):
        assert got == want, f"cell {index} of tutorial.ipynb differs from tutorial.py: {SYNC_HINT}"
    assert len(actual) == len(expected), (
        f"tutorial.ipynb has {len(actual)} cells, tutorial.py {len(expected)}: {SYNC_HINT}")
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert committed.metadata["kernelspec"]["name"] == "python3"
    # Committed without outputs: outputs of the tiny run would show meaningless numbers,
    # and only the sources are kept in sync.
    code = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        "commit tutorial.ipynb without outputs (`jupyter nbconvert --clear-output "
        "--inplace notebooks/tutorial.ipynb`)")


def number_after(key: str, text: str) -> float:
    found = re.findall(rf"^{key}:? ([0-9.]+)$", text, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one '{key}' line in the last cell's output:\n{text}"
    return float(found[0])


@pytest.mark.integration
def test_notebook_executes_in_tiny_mode(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(IPYNB, as_version=4)
    # Tiny settings whatever the committed parameters cell says (as papermill would).
    parameters = next(i for i, cell in enumerate(notebook.cells)
                      if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell("TINY = True"))
    # The kernel imports this checkout and writes its figures under tmp_path.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= len(FIGURES)  # every figure is shown inline
    assert {path.stem for path in (tmp_path / "runs" / "tutorial").glob("*.png")} == FIGURES

    printed = "".join(output.get("text", "") for output in outputs
                      if output.output_type == "stream")
    assert "class 9: mean weight" in printed
    last = "".join(output.get("text", "") for output in code[-1].outputs
                   if output.output_type == "stream")
    clean = number_after("clean accuracy", last)
    robust = number_after("robust accuracy", last)
    assert 1.0 / NUM_CLASSES < clean <= 1.0  # better than chance even after a tiny run
    assert 0.0 <= robust <= clean
