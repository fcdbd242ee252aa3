"""A failed step changes nothing on any rank: a matrix that reaches orthogonalization holding NaN/±inf (its
momentum was non-finite before the step, e.g. loaded from a broken checkpoint) is seen only by the rank that
orthogonalizes it; every rank must still raise the same error and write no weight, never hang in a collective.

Two gloo ranks (tests/scripts/dist_checks.py, ``ONLY=nonfinite``): the replicated (DDP) and the sharded (FSDP2
``Shard(0)``) backends, the inf on the owner of the matrix, on the other rank, or on both, under
``nonfinite="error"`` and ``"skip"`` (a state that is already non-finite is refused under both: skipping would
freeze the parameter for good). Before the fix the owner raised and the other rank waited in the all-gather /
all-to-all until the faulthandler timer killed it.

The in-step guard's path too: a sharded bf16 gradient that overflows the Nesterov mix in one rank's shard only.
Before the fix that rank raised (or dropped the matrix) and the other went on alone into the exchange."""

import json

import pytest
from conftest import REPO
from dist_helpers import torchrun

LAYOUTS, WHERE, MODES = ("ddp", "fsdp"), ("owner", "other", "all"), ("error", "skip")


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    out = tmp_path_factory.mktemp("nonfinite")
    # a hang becomes a failure with every rank's stack after 30 s (faulthandler), not a stuck test
    torchrun(
        2,
        out,
        script=REPO / "tests" / "scripts" / "dist_checks.py",
        timeout=120,
        extra_env={"ONLY": "nonfinite", "HANG_AFTER": "30"},
    )
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nonfinite_momentum_raises_on_every_rank_and_writes_nothing(seen, layout, where, mode):
    name = f"nonfinite-{layout}-{where}-{mode}"
    r0, r1 = (s[name]["result"] for s in seen)
    assert r0 == r1  # the ranks never disagree: same error (or none), same writes, same counters
    if layout == "ddp" and where == "other":
        # rank 0 holds a broken replica of w1's momentum but does not orthogonalize w1: rank 1's finite result is
        # used everywhere (the replicas' weights stay equal); reading every replica would cost a pass per step
        assert "error" not in r0 and r0["written"] == [True, True]
        return
    assert r0["error"] == "FloatingPointError"
    msg = r0["message"]
    assert "non-finite direction at orthogonalize for 'w1'" in msg and "momentum_buffer" in msg
    assert "on at least one rank" in msg and "no weight was written" in msg
    assert r0["written"] == [False, False] and r0["skipped"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_an_overflow_in_one_ranks_shard_is_refused_or_skipped_on_every_rank(seen, mode):
    r0, r1 = (s[f"guard-{mode}"]["result"] for s in seen)
    assert r0 == r1 and r0["written"] == [False]
    if mode == "error":
        assert (
            r0["error"] == "FloatingPointError" and "non-finite momentum" in r0["message"] and "'w0'" in r0["message"]
        )
        assert r0["skipped"] == 0
    else:
        assert "error" not in r0 and r0["skipped"] == 1
