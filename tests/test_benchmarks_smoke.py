"""The benchmark scripts run end to end at tiny sizes (timings are not checked: benchmarks are not tests), and the
committed RESULTS.md regenerates from the committed results JSON unchanged."""

import os
import shutil
import subprocess
import sys
import time

from conftest import REPO, data_dir, with_spectrum

BENCH = REPO / "benchmarks"


def test_run_all_tiny(tmp_path):
    env = dict(os.environ, HF_MUON_DATA=str(data_dir()), OMP_NUM_THREADS="1")
    # --results-dir: the tiny JSON go to a temporary folder, the committed *_tiny.json stay as they are
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--tiny", "--allow-busy", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "state bytes" in out and "TARGET diagnostics" in out and "total / DDP-AdamW" in out
    assert "CPU: " in out and "avx512_bf16" in out  # the CPU line with its flags heads every report
    names = (
        "step",
        "trainer",
        "distributed",
        "convergence",
        "scaling",
        "moe_routing",
        "variants",
        "startup",
        "ns_defaults",
    )
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(f"{n}_tiny.json" for n in names)


def test_reports_regenerate_from_committed_json(tmp_path):
    """``run_all.py --report-only`` on copies of the committed results rewrites RESULTS.md byte for byte."""
    results = tmp_path / "results"
    shutil.copytree(BENCH / "results", results)
    before = (BENCH / "RESULTS.md").read_bytes()
    code = (
        "import sys, benchmarks.cli as c; from pathlib import Path; c.RESULTS_MD = Path(sys.argv[1]); "
        "from benchmarks import run_all; sys.exit(run_all.main(['--report-only', '--results-dir', sys.argv[2]]))"
    )
    shutil.copy(BENCH / "RESULTS.md", tmp_path / "RESULTS.md")
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "RESULTS.md"), str(results)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "RESULTS.md").read_bytes() == before
    for f in (BENCH / "results").glob("*.json"):  # measuring nothing writes no JSON (the plots are redrawn)
        assert (results / f.name).read_bytes() == f.read_bytes(), f.name


def test_timing_protocol_interleaves_rounds():
    """Warmup rounds, then timed rounds, each starting one contender later (A, B, …; B, …, A; …); a failing
    contender drops out with its exception, a slow one is timed once."""
    sys.path.insert(0, str(REPO))
    from benchmarks.timing import Contender, interleave

    calls = []

    def fail():
        calls.append("C")
        raise RuntimeError("boom")

    def slow():
        calls.append("S")
        if calls.count("S") == 2:  # the second warmup call is the one judged
            time.sleep(0.02)

    out = interleave(
        [
            Contender("A", lambda: calls.append("A")),
            Contender("B", lambda: calls.append("B")),
            Contender("C", fail),
            Contender("S", slow),
        ],
        warmup=2,
        repeats=3,
        slow_s=0.01,
    )
    assert calls == ["A", "B", "C", "S", "A", "B", "S"] + ["A", "B", "S"] + ["B", "A"] + ["A", "B"]
    assert isinstance(out["C"], RuntimeError)
    assert len(out["A"].times_ms) == 3 and len(out["A"].warmup_ms) == 2 and out["A"].interleaved_with == 3
    assert out["S"].reduced and len(out["S"].times_ms) == 1


def test_ns_defaults_wide_tiny(tmp_path):
    """``bench_ns_defaults.py --wide``: convergence only (no quality rows), its own JSON and report."""
    env = dict(os.environ, HF_MUON_DATA=str(data_dir()), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_ns_defaults.py"),
            "--tiny",
            "--wide",
            "--allow-busy",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("*.json")] == ["ns_defaults_wide_tiny.json"]
    assert "Gram (auto) vs standard" in proc.stdout and "Quality:" not in proc.stdout
    assert (
        "default (auto: Gram on 256×688)" in proc.stdout
        and "within seed noise of ns_method=newton_schulz" in proc.stdout
    )


def test_ns_bound_is_what_newton_schulz_computes_and_finds_4_steps_where_the_spectrum_allows():
    """bench_ns_defaults' bound: its default row equals the distance float64 Newton-Schulz reaches on the matrix
    (the scalar map is exact), and on a spectrum inside [1e-2, 1] (σ_max-relative) 4 steps of a ladder reach the
    default's distance, while on a spectrum reaching 1e-4 they do not."""
    sys.path.insert(0, str(REPO))
    import torch

    from benchmarks.bench_ns_defaults import bound
    from hf_muon.ns.newton_schulz import newton_schulz
    from hf_muon.ns.reference import svd_orthogonalize

    easy = with_spectrum(32, 80, torch.logspace(0, -1.9, 32), seed=0)
    hard = with_spectrum(32, 80, torch.logspace(0, -4, 32), seed=1)
    for W in (easy, hard):
        O = newton_schulz(W, steps=5, dtype=torch.float64)
        ref = svd_orthogonalize(W)
        d = (torch.linalg.matrix_norm(O - ref) / torch.linalg.matrix_norm(ref)).item()
        assert abs(bound([W])["default"]["mean"] - d) < 1e-9
    b_easy, b_hard = bound([easy]), bound([hard])
    assert b_easy["best_4"]["mean"] <= b_easy["default"]["mean"]
    assert b_hard["best_4"]["mean"] > b_hard["default"]["mean"]
    assert set(b_easy["rows"]) >= {"oracle σ_max start, 5 steps polar_express"}
