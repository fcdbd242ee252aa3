"""torchrun --nproc_per_node 2 tests/scripts/qk_clip_dist.py OUT: QK-Clip across two gloo ranks (see
tests/optim/test_qk_clip.py::test_ranks_share_the_max_and_clip_identically)."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import tiny_llama  # noqa: E402

import hf_muon  # noqa: E402
from hf_muon.optim.qk_clip import _scale_  # noqa: E402


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = tiny_llama()  # the same weights on both ranks
    opt = hf_muon.create_optimizer(model, lr=1e-4, qk_clip=0.04)
    x = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(10 + rank))  # different batches
    model(input_ids=x, labels=x).loss.backward()
    for p in model.parameters():  # as DDP would: the same averaged gradient on every rank
        dist.all_reduce(p.grad)
        p.grad /= 2
    local = torch.stack([v.clone() for v in opt.qk_clip.logits.values])
    opt.step()
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    full = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    scale = torch.arange(1.0, 9.0)
    sharded = distribute_tensor(full.clone(), mesh, [Shard(0)])
    _scale_(sharded, -2, scale)
    torch.save(
        {
            "S": opt.qk_clip.maxima,
            "local": local,
            "clipped": opt.qk_clip.last["qk_clip_heads_clipped"],
            "weights": [p.detach() for p in model.parameters()],
            "dtensor_ok": bool(torch.equal(sharded.full_tensor(), full * scale[:, None])),
        },
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
