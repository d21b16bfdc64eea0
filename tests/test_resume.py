"""A killed training job resumes with BackupAndRestore and ends where an uninterrupted run ends."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("resume_script.py")
ROOT = SCRIPT.parent.parent


def run(backup, out, kill_at=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("KILL_AT", None)
    if kill_at:
        env["KILL_AT"] = kill_at
    return subprocess.run([sys.executable, str(SCRIPT), str(backup), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.integration  # trains, kills and restarts a job in subprocesses
def test_killed_job_resumes_to_the_uninterrupted_weights(tmp_path):
    reference = run(tmp_path / "backup_a", tmp_path / "a.npz")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = run(tmp_path / "backup_b", tmp_path / "b.npz", kill_at="1,1")  # mid-epoch 1
    assert killed.returncode == 17 and not (tmp_path / "b.npz").exists()
    resumed = run(tmp_path / "backup_b", tmp_path / "b.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert len(a.files) == len(b.files) > 10  # classifier, weight net, seeds, epoch
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
