"""Run ``train_clm.py`` with the Trainer's own ``--fsdp`` on CPU: a test, never the product.

accelerate enables FSDP only on GPU-type devices; on CPU it keeps ``MULTI_CPU`` and the Trainer runs plain DDP. This
wrapper replaces that one device gate: after ``AcceleratorState`` is built with an FSDP plugin, it gets what the gate
sets on a GPU (``distributed_type=FSDP`` and the plugin). Everything else — the Trainer's plugin from ``--fsdp`` /
``--fsdp_config``, ``fully_shard``, the optimizer built after sharding, checkpoints — is the libraries' own code.

    torchrun --nproc_per_node 2 tests/scripts/trainer_fsdp_cpu.py train_clm.py ARGS... --fsdp full_shard
"""

import runpy
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_as_on_gpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate's own init does


AcceleratorState.__init__ = _init_as_on_gpu

if __name__ == "__main__":
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
