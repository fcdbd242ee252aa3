"""Run a script (``ddp_teardown_check.py SCRIPT ARGS...``) with one check added: when it destroys the process
group, no ``DistributedDataParallel`` may still be alive. A DDP reducer left holding the last reference to a gloo
group tears it down while holding the GIL that a gloo worker may still need, which hangs the rank at random
(docs/distributed.md); this turns that race into a deterministic failure."""

import gc
import runpy
import sys

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

_destroy = dist.destroy_process_group


def checked_destroy(group=None):
    # no gc.collect(): a DDP in an uncollected cycle would be freed later, at a time nobody chose
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    if alive:
        raise SystemExit(f"destroy_process_group() with {alive} DistributedDataParallel model(s) still alive")
    _destroy(group)


if __name__ == "__main__":
    dist.destroy_process_group = checked_destroy
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
