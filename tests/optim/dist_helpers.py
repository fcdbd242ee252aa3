"""Launch tests/scripts/dist_train.py (torchrun, gloo) and compare what it wrote; shared by the backend tests."""

import os
import subprocess
import sys

import torch
from conftest import REPO, child_env, free_port

SCRIPT = REPO / "tests" / "scripts" / "dist_train.py"
BIN = os.path.dirname(sys.executable)


def env(**extra):
    return child_env(**extra)


def torchrun(world, *args, script=SCRIPT, timeout=240, check=True, extra_env=None):
    """``torchrun --nproc_per_node world script args`` (``extra_env``: more environment variables); asserts success
    unless ``check=False``."""
    cmd = [
        os.path.join(BIN, "torchrun"),
        "--nproc_per_node",
        str(world),
        "--master_port",
        str(free_port()),
        str(script),
        *map(str, args),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(**(extra_env or {})), cwd=REPO, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def single(*args):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--mode", "single", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def max_rel_diff(a_dir, b_dir, name="weights.pt"):
    a, b = torch.load(a_dir / name), torch.load(b_dir / "weights.pt")
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in a)
