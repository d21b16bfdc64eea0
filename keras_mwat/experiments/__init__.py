"""Experiment orchestration on top of the library: the paper's numbers, its evaluation
protocol on saved runs, and the side-by-side report.

Nothing in ``keras_mwat`` itself imports this subpackage; it reads the run directories
that ``keras-mwat compare`` writes (``DIR/<method>/seed<k>/result.json``, ``model.keras``,
``best.keras``).

- ``paper_tables``: the paper's Tables 1-3 (clean / PGD-20 / AutoAttack, in percent) as
  data, keyed by cell id and by this library's method names.
- ``paper_eval``: the paper's evaluation protocol (clean and PGD-20 on the whole test set,
  AutoAttack on its first 1,000 points) of the last and the best checkpoint of every
  finished run (``keras-mwat paper-eval DIR``).
- ``side_by_side``: the Markdown report of ours next to the paper's numbers
  (``keras-mwat compare --resume DIR --report-only --paper-cell CELL``).
- ``provenance``: the code's commit, and atomic file writes.

Example:

```python
from keras_mwat.experiments import paper_tables

paper_tables.paper_result("fmnist-tinycnn-linf0.1", "mwat")
# PaperResult(clean=86.6, pgd20=77.4, aa=68.8)
```
"""
