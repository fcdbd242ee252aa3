"""The agreement checks of hf_muon's distributed backends, on 2 gloo ranks; used by tests/optim/test_layouts.py.

    torchrun --nproc_per_node 2 tests/scripts/dist_checks.py OUT_DIR

Each scenario runs on both ranks; what each rank saw (the exception type and message, or the result) goes to
OUT_DIR/rank<r>.json. Every scenario must end on both ranks (an error raised on every rank at once, never one
rank waiting in a collective alone): the faulthandler timer turns a hang into a failure with stacks.

* ``partial``: a job whose DTensor placement is ``Partial`` (a pending reduction; the optimizer's rules reduce
  such gradients, so only a custom caller can hand one to the backend) → a layout error on every rank.
* ``local_shape``: rank 1's local shard is not what ``Shard(0)`` gives → both ranks raise, rank 1 explains.
* ``mismatch``: rank 1 steps one more Muon matrix than rank 0 → both raise, naming each rank's matrices.
* ``dtype``: rank 0's CPU says float32, rank 1's bfloat16 (``HF_MUON_CPU_NS_DTYPE`` per rank) → both use rank 0's.
* ``diverged`` / ``clones`` / ``unchecked`` / ``independent``: two plain models without DDP on different batches
  (error with the fix), on the same batches (replicas: passes), with ``replica_check=False``, with
  ``distributed="none"``.
* ``strided``: FSDP2 + TP style placements (``_StridedShard(0)``, ``Shard(0)``) and (``Shard(0)``,
  ``Shard(1)``) on a 1×2 mesh: one step equals the one-process result.
* ``nonfinite-<layout>-<where>-<mode>`` (``ONLY=nonfinite``: all 16): two Muon matrices ``w0`` (owned by rank 0)
  and ``w1`` (owned by rank 1), plain (``ddp``: the replicated backend) or ``Shard(0)`` DTensors (``fsdp``: the
  sharded backend); after one finite step, ``w1``'s momentum gets an inf on rank 1 (``owner``), rank 0
  (``other``), or both (``all``); the next step under ``nonfinite`` error / skip must raise the same error on
  both ranks with no weight written on either (recorded: error, message, ``written``).
* ``guard-<mode>``: a bf16 ``Shard(0)`` matrix whose gradient overflows the Nesterov mix in rank 0's shard only
  (the in-step guard's path): both ranks raise (error) or both skip and count it (skip), nothing written.
"""

import json
import os
import sys

os.environ["HF_MUON_CPU_NS_DTYPE"] = "float32" if os.environ.get("RANK") == "0" else "bfloat16"

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import hf_muon  # noqa: E402


def dtensor_param(local, mesh, placements, shape=None):
    from torch.distributed.tensor import DTensor

    shape = shape or None
    t = DTensor.from_local(
        local, mesh, placements, run_check=False, shape=shape, stride=None if shape is None else (shape[1], 1)
    )
    return torch.nn.Parameter(t)


def step_once(params, grads, **knobs):
    opt = hf_muon.Muon(
        [{"params": params, "param_names": [f"w{i}" for i in range(len(params))]}],
        lr=0.1,
        ns_dtype=knobs.pop("ns_dtype", "float32"),
        **knobs,
    )
    opt.backend.bind(opt)
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    return opt


def scenario(name, rank, mesh):
    from torch.distributed.tensor import Partial, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    g = torch.Generator().manual_seed(7)
    if name == "partial":  # the rules reduce a Partial gradient; a backend handed a Partial job must refuse it
        from hf_muon.ns.batching import Job, NSConfig

        opt = hf_muon.Muon([torch.nn.Parameter(torch.zeros(8, 8))], lr=0.01)
        job = Job(dtensor_param(torch.randn(8, 8, generator=g), mesh, [Partial()]).data, NSConfig(dtype="float32"))
        opt.backend.orthogonalize([job])
    elif name == "local_shape":
        rows = 4 if rank == 0 else 5  # Shard(0) of 8 rows gives 4 and 4
        p = dtensor_param(torch.randn(rows, 8, generator=g), mesh, [Shard(0)], shape=(8, 8))
        step_once([p], [dtensor_param(torch.randn(rows, 8, generator=g), mesh, [Shard(0)], shape=(8, 8)).data])
    elif name == "mismatch":
        params = [torch.nn.Parameter(torch.randn(8, 8, generator=g)) for _ in range(1 + rank)]
        step_once(params, [torch.ones(8, 8) for _ in params])
    elif name == "dtype":
        p = torch.nn.Parameter(torch.randn(8, 8, generator=g))
        opt = step_once([p], [torch.ones(8, 8)], ns_dtype="auto")
        return {"ns_dtype": opt.backend.ns_dtype, "saved": opt.state_dict()["hf_muon_backend"]}
    elif name in ("diverged", "clones", "unchecked", "independent"):
        p = torch.nn.Parameter(torch.randn(8, 8, generator=g))
        grad = torch.randn(8, 8, generator=torch.Generator().manual_seed(rank if name != "clones" else 0))
        knobs = {"unchecked": {"replica_check": False}, "independent": {"distributed": "none"}}.get(name, {})
        opt = step_once([p], [grad], **knobs)
        return {"backend": type(opt.backend.plain).__name__}
    elif name == "strided":
        full = torch.randn(8, 6, generator=g, dtype=torch.float64)
        grad = torch.randn(8, 6, generator=g, dtype=torch.float64)
        mesh2 = dist.device_mesh.init_device_mesh("cpu", (1, 2), mesh_dim_names=("fsdp", "tp"))
        from torch.distributed.tensor import distribute_tensor

        out = {}
        for label, pl in (("colwise", [_StridedShard(0, split_factor=2), Shard(0)]), ("rowwise", [Shard(0), Shard(1)])):
            p = torch.nn.Parameter(distribute_tensor(full.clone(), mesh2, pl))
            step_once([p], [distribute_tensor(grad.clone(), mesh2, pl)])
            ref = torch.nn.Parameter(full.clone())
            opt = hf_muon.Muon([ref], lr=0.1, ns_dtype="float32", distributed="none")
            ref.grad = grad.clone()
            opt.step()
            out[label] = float((p.detach().full_tensor() - ref.detach()).abs().max())
        return out
    elif name.startswith("nonfinite-"):
        return nonfinite(*name.split("-")[1:], rank=rank, mesh=mesh)
    elif name.startswith("guard-"):
        return guard(name.split("-")[1], mesh)
    return {"ok": True}


NONFINITE = [
    f"nonfinite-{lay}-{where}-{mode}"
    for lay in ("ddp", "fsdp")
    for where in ("owner", "other", "all")
    for mode in ("error", "skip")
] + ["guard-error", "guard-skip"]


def outcome(opt, params, before, local=lambda t: t.to_local()):
    """One step: the error (if any), which weights were written, the skip counter."""
    out = {}
    try:
        opt.step()
    except FloatingPointError as e:
        out = {"error": type(e).__name__, "message": str(e)}
    out["written"] = [not torch.equal(local(a), local(p.detach())) for a, p in zip(before, params)]
    out["skipped"] = opt.param_groups[0]["nonfinite_skipped"]
    return out


def guard(mode, mesh):
    """Rank 0's rows of the gradient overflow bf16's Nesterov mix; rank 1's do not."""
    from torch.distributed.tensor import Shard, distribute_tensor

    p = torch.nn.Parameter(
        distribute_tensor(
            torch.randn(8, 8, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16), mesh, [Shard(0)]
        )
    )
    opt = hf_muon.Muon([{"params": [p], "param_names": ["w0"]}], lr=0.1, ns_dtype="float32", nonfinite=mode)
    opt.backend.bind(opt)
    grad = torch.ones(8, 8, dtype=torch.bfloat16)
    grad[:4] = 2e38
    p.grad = distribute_tensor(grad, mesh, [Shard(0)])
    return outcome(opt, [p], [p.detach().clone()])


def nonfinite(layout, where, mode, rank, mesh):
    """Non-finite momentum in ``w1`` (owned by rank 1) on some ranks: every rank must raise, none may write."""
    from torch.distributed.tensor import Shard, distribute_tensor

    g = torch.Generator().manual_seed(3)
    fulls = [torch.randn(8, 8, generator=g) for _ in range(2)]
    grads = [torch.randn(8, 8, generator=g) for _ in range(2)]
    wrap = (lambda t: t) if layout == "ddp" else (lambda t: distribute_tensor(t, mesh, [Shard(0)]))
    params = [torch.nn.Parameter(wrap(t.clone())) for t in fulls]
    opt = step_once(params, [wrap(t.clone()) for t in grads], nonfinite=mode)
    buf = opt.state[params[1]]["momentum_buffer"]
    if where == "all" or rank == (1 if where == "owner" else 0):
        (buf.to_local() if layout == "fsdp" else buf)[0, 0] = float("inf")
    before = [p.detach().clone() for p in params]
    for p, t in zip(params, grads):
        p.grad = wrap(t.clone())
    return outcome(opt, params, before, (lambda t: t) if layout == "ddp" else (lambda t: t.to_local()))


def main():
    import faulthandler

    faulthandler.enable()
    faulthandler.dump_traceback_later(int(os.environ.get("HANG_AFTER", "90")), exit=True, file=sys.stderr)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = dist.device_mesh.init_device_mesh("cpu", (2,))
    seen = {}
    names = ("partial", "local_shape", "mismatch", "dtype", "diverged", "clones", "unchecked", "independent", "strided")
    only = os.environ.get("ONLY", ",".join(names))
    for name in NONFINITE if only == "nonfinite" else only.split(","):
        try:
            seen[name] = {"result": scenario(name, rank, mesh)}
        except Exception as e:  # every rank must get here for every scenario
            seen[name] = {"error": type(e).__name__, "message": str(e)}
        dist.barrier()
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(seen, f, indent=1)
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
