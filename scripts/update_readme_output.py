"""Regenerates the `make train` output shown in README.md from a fresh run.

    make readme-output      # runs `make train`, then this script on its log

Reads the log of `make train` (the path given as the first argument), takes its closing
`clean accuracy` and `robust accuracy` lines and the wall time (second argument, seconds),
and rewrites the block between the `<!-- train-output:start -->` and
`<!-- train-output:end -->` markers of README.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

START, END = "<!-- train-output:start -->", "<!-- train-output:end -->"


def block(log: str, seconds: float) -> str:
    lines = [line for line in log.splitlines()
             if line.startswith(("clean accuracy:", "robust accuracy:"))]
    if len(lines) != 2:
        raise SystemExit("update_readme_output: the log has no clean/robust accuracy lines: "
                         "did `make train` finish?")
    minutes, rest = divmod(round(seconds), 60)
    return (f"{START}\nWhat `make train` printed in a fresh clone (seed 0; {minutes} min {rest} s "
            "wall after `make test` had created the virtual environment, on 2 CPU cores; the "
            "same seed gives the same numbers on the same machine, and float summation order "
            "can move them by a test point or two elsewhere; regenerate with "
            "`make readme-output`):\n\n```\n" + "\n".join(lines) + f"\n```\n{END}")


def main(log_path: str, seconds: str, readme: str = "README.md") -> None:
    text = Path(readme).read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"update_readme_output: no {START} ... {END} block in {readme}")
    new = pattern.sub(lambda _: block(Path(log_path).read_text(), float(seconds)), text)
    Path(readme).write_text(new)
    print(f"updated {readme}")


if __name__ == "__main__":
    main(*sys.argv[1:])
