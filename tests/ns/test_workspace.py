"""Newton-Schulz scratch reuse (hf_muon.ns.workspace): bit-identical results, no result aliasing scratch."""

import threading

import pytest
import torch

from hf_muon.ns import newton_schulz as NS
from hf_muon.ns import workspace
from hf_muon.ns.batching import Job, NSConfig, run_jobs


def _mats(seed):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(64, 172, generator=g),
        torch.randn(172, 64, generator=g),  # one standard stack of 2
        torch.randn(256, 600, generator=g),
        torch.randn(600, 256, generator=g),  # Gram {2, 4} restarts in bf16
        torch.randn(48, 48, generator=g),
    ]  # a 2-D call alone


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


@pytest.mark.parametrize("method", ["newton_schulz", "gram"])
def test_direct_calls_on_one_matrix_are_bit_identical_and_kept(method):
    """newton_schulz on a single 2-D matrix (the mm/addmm branches) and the per-matrix loop's returned buffer."""
    g = torch.Generator().manual_seed(3)
    G, H = torch.randn(256, 700, generator=g), torch.randn(256, 700, generator=g)
    with workspace.disabled():
        fresh = NS.newton_schulz(G, dtype="bfloat16", method=method)
    first = NS.newton_schulz(G, dtype="bfloat16", method=method)
    kept = first.clone()
    NS.newton_schulz(H, dtype="bfloat16", method=method)
    assert torch.equal(first, fresh) and torch.equal(first, kept)


def test_per_matrix_result_is_kept_across_calls(monkeypatch):
    monkeypatch.setattr(NS, "LOOP_NUMEL", 1)
    tr = NS.schedule("polar_express", 5)
    first = NS.ns_iterate(torch.randn(3, 32, 80).bfloat16() / 20, tr)
    kept = first.clone()
    NS.ns_iterate(torch.randn(3, 32, 80).bfloat16() / 20, tr)
    assert torch.equal(first, kept)


def test_scratch_is_reused_and_per_thread():
    workspace.clear()
    jobs = _jobs(_mats(0), "bfloat16", "auto")
    run_jobs(jobs)
    held = workspace.held_bytes()
    assert held > 0
    run_jobs(jobs)
    assert workspace.held_bytes() == held  # the same buffers again, nothing new
    mine = workspace.scratch("probe", (4, 4), torch.float32, torch.device("cpu"))
    assert workspace.scratch("probe", (4, 4), torch.float32, torch.device("cpu")) is mine

    seen = {}

    def other():
        seen["before"] = workspace.held_bytes()
        seen["probe"] = workspace.scratch("probe", (4, 4), torch.float32, torch.device("cpu"))
        seen["results"] = run_jobs(jobs)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen["before"] == 0 and seen["probe"] is not mine  # another thread has its own scratch
    for a, b in zip(run_jobs(jobs), seen["results"]):
        assert torch.equal(a, b)


def test_limit_evicts_least_recently_used_and_falls_back(monkeypatch):
    cpu = torch.device("cpu")
    workspace.clear()
    monkeypatch.setattr(workspace, "LIMIT_BYTES", 3 * 4096)
    a = workspace.scratch("a", (1024,), torch.float32, cpu)  # 4 KiB each
    b = workspace.scratch("b", (1024,), torch.float32, cpu)
    c = workspace.scratch("c", (1024,), torch.float32, cpu)
    assert workspace.scratch("a", (1024,), torch.float32, cpu) is a  # a is now the most recently used
    workspace.scratch("d", (1024,), torch.float32, cpu)  # evicts b, the least recently used
    assert workspace.held_bytes() == 3 * 4096
    assert workspace.scratch("a", (1024,), torch.float32, cpu) is a
    assert workspace.scratch("c", (1024,), torch.float32, cpu) is c
    assert workspace.scratch("b", (1024,), torch.float32, cpu) is not b
    big = workspace.scratch("big", (4096,), torch.float32, cpu)  # larger than the limit: not kept
    assert workspace.scratch("big", (4096,), torch.float32, cpu) is not big
    assert workspace.held_bytes() == 3 * 4096

    monkeypatch.setattr(workspace, "LIMIT_BYTES", 0)  # nothing kept at all: same results
    workspace.clear()
    jobs = _jobs(_mats(0), "bfloat16", "auto")
    with workspace.disabled():
        fresh = run_jobs(jobs)
    for x, y in zip(fresh, run_jobs(jobs)):
        assert torch.equal(x, y)
    assert workspace.held_bytes() == 0


def test_inference_mode_buffers_do_not_leak_into_training_steps():
    """A first NS call under torch.inference_mode() must not leave buffers a later no_grad step cannot write."""
    workspace.clear()
    G = torch.randn(64, 172)
    with torch.inference_mode():
        inside = NS.orthogonalize(G.clone())
    with torch.no_grad():
        outside = NS.orthogonalize(G)
    assert torch.equal(inside, outside)
