"""Newton-Schulz scratch reuse (hf_muon.ns.workspace): bit-identical results, no result aliasing scratch."""

import threading

import pytest
import torch

from hf_muon.ns import newton_schulz as NS
from hf_muon.ns import workspace
from hf_muon.ns.batching import Job, NSConfig, run_jobs


def _mats(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(64, 172, generator=g), torch.randn(172, 64, generator=g),  # one standard stack of 2
            torch.randn(256, 600, generator=g), torch.randn(600, 256, generator=g),  # Gram {2, 4} restarts in bf16
            torch.randn(48, 48, generator=g)]  # a 2-D call alone


def _jobs(mats, dtype, method, steps=5):
    return [Job(t, NSConfig(steps, "polar_express", dtype, method)) for t in mats]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method", ["newton_schulz", "gram", "auto"])
def test_scratch_gives_bit_identical_results(dtype, method):
    jobs = _jobs(_mats(0), dtype, method)
    with workspace.disabled():
        fresh = run_jobs(jobs)
    reused = run_jobs(jobs)
    again = run_jobs(jobs)  # the second call runs on the buffers the first one left
    for a, b, c in zip(fresh, reused, again):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_per_matrix_path_with_scratch_is_bit_identical(monkeypatch):
    monkeypatch.setattr(NS, "LOOP_NUMEL", 1)  # force the matrix-by-matrix X-update on a small stack
    X = torch.randn(3, 32, 80).bfloat16() / 20
    tr = NS.schedule("polar_express", 5)
    with workspace.disabled():
        fresh = NS.ns_iterate(X, tr)
    assert torch.equal(NS.ns_iterate(X, tr), fresh) and torch.equal(NS.ns_iterate(X, tr), fresh)


@pytest.mark.parametrize("steps", [0, 1, 5])
@pytest.mark.parametrize("method", ["newton_schulz", "gram"])
def test_results_are_never_scratch(steps, method):
    """A result kept from one call is not overwritten by the next call on matrices of the same shapes."""
    first = run_jobs(_jobs(_mats(1), "bfloat16", method, steps))
    kept = [r.clone() for r in first]
    run_jobs(_jobs(_mats(2), "bfloat16", method, steps))
    for r, k in zip(first, kept):
        assert torch.equal(r, k)


def test_scratch_is_reused_bounded_and_per_thread(monkeypatch):
    workspace.clear()
    jobs = _jobs(_mats(0), "bfloat16", "auto")
    run_jobs(jobs)
    held = workspace.held_bytes()
    assert held > 0
    run_jobs(jobs)
    assert workspace.held_bytes() == held  # the same buffers again, nothing new

    seen = {}
    thread = threading.Thread(target=lambda: seen.update(before=workspace.held_bytes()))
    thread.start()
    thread.join()
    assert seen["before"] == 0  # another thread starts with its own (empty) scratch

    monkeypatch.setattr(workspace, "LIMIT_BYTES", 0)  # over the limit: plain allocations, same results
    workspace.clear()
    with workspace.disabled():
        fresh = run_jobs(jobs)
    for a, b in zip(fresh, run_jobs(jobs)):
        assert torch.equal(a, b)
    assert workspace.held_bytes() == 0
