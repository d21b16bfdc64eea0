"""Launcher of the ``keras-mwat`` command: ``--help`` and usage errors without TensorFlow.

``import keras_mwat`` loads TensorFlow and registers the library's Keras classes (so that
``keras.saving.load_model`` reads saved models). The command first parses its arguments
with the package imported lazily (``KERAS_MWAT_LAZY_IMPORT=1`` during the import only), so
that ``keras-mwat --help`` answers at once and quietly; ``keras_mwat.cli.main`` then loads
the library before it runs a command.

Example:
```python
import keras_mwat_cli
keras_mwat_cli.main(["train", "--epochs", "1", "--subset", "256"])
```
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Runs ``keras-mwat`` with ``argv`` (default: the command line's arguments)."""
    # TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features) are noise for a
    # command; set before anything can import TensorFlow. An explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    lazy = "keras_mwat" not in sys.modules
    if lazy:
        os.environ["KERAS_MWAT_LAZY_IMPORT"] = "1"
    try:
        from keras_mwat import cli
    finally:
        if lazy:
            del os.environ["KERAS_MWAT_LAZY_IMPORT"]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
