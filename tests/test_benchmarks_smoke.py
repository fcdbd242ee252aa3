"""The benchmark scripts run end to end at tiny sizes (timings are not checked: benchmarks are not tests)."""

import os
import subprocess
import sys

from conftest import REPO, data_dir


def test_run_all_tiny():
    env = dict(os.environ, HF_MUON_DATA=str(data_dir()), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--tiny", "--allow-busy"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "state bytes" in out and "TARGET diagnostics" in out and "total / DDP-AdamW" in out
