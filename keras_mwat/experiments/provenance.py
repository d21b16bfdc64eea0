"""Where a result came from: the code's commit, and files written whole or not at all."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

__all__ = ["code_version", "write_atomically"]

_PACKAGE = Path(__file__).resolve().parents[1]


def _git(*arguments: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_PACKAGE), *arguments], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The version of the code that is running: the git commit of the checkout that holds
    ``keras_mwat`` (``git rev-parse HEAD``), whether the package's tracked files differ from
    it (``dirty``), and the package version. Outside a git checkout (an installed wheel)
    ``commit`` and ``dirty`` are None and the version is the record.

    Returns:
        ``{"commit": str | None, "dirty": bool | None, "keras_mwat": str}``.

    Example:

    ```python
    code_version()   # {'commit': '9251b3a...', 'dirty': False, 'keras_mwat': '0.1.0'}
    ```
    """
    from keras_mwat import __version__

    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
        dirty = None if status is None else bool(status)
    return {"commit": commit or None, "dirty": dirty, "keras_mwat": __version__}


def write_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename,
    so that ``path`` holds either nothing or the whole text, never a part (a run killed while
    writing leaves no half file that a resumed run would take as done).

    Example:

    ```python
    write_atomically("results/run/paper_eval_last.json", json.dumps(record))
    ```
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
