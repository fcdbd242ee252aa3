"""Run ``train_clm.py`` with the Trainer's own ``--fsdp`` on CPU: a test, never the product.

Only accelerate's device gate is replaced (:mod:`cpu_fsdp_gate`); the Trainer's plugin from ``--fsdp`` /
``--fsdp_config``, ``fully_shard``, the optimizer built after sharding and checkpoints are the libraries' own code.

    torchrun --nproc_per_node 2 tests/scripts/trainer_fsdp_cpu.py train_clm.py ARGS... --fsdp full_shard
"""

import runpy
import sys

from cpu_fsdp_gate import open_gate

if __name__ == "__main__":
    open_gate()
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
