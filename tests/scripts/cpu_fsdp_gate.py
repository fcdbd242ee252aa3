"""accelerate's FSDP device gate, opened on CPU: a test helper, never the product.

accelerate enables FSDP only on GPU-type devices; on CPU it keeps ``MULTI_CPU`` (the Trainer and ``Accelerator`` then
run plain DDP). :func:`open_gate` replaces that one gate: once ``AcceleratorState`` is built with an FSDP plugin, it
gets what the gate sets on a GPU (``distributed_type=FSDP`` and the plugin). The checks ``Accelerator`` runs after
building its state (``ParallelismConfig`` needs FSDP) and everything else are the libraries' own code.
"""

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType


def open_gate() -> None:
    init = AcceleratorState.__init__

    def init_as_on_gpu(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate's own init does

    AcceleratorState.__init__ = init_as_on_gpu
