"""Facts about the tensors the optimizer is handed, shared by routing and the optimizer (the lowest floor, so
that neither imports the other): whether a tensor is a DTensor shard, and what to do with a flat 1-D view."""

FLAT_PARAM_HINT = (
    "Muon needs whole 2-D weight matrices, but this parameter is a 1-D flat view (FSDP v1 FlatParameter or a "
    "DeepSpeed ZeRO partition). Use FSDP2 (fully_shard / accelerate `fsdp_version: 2`), or DeepSpeed's own Muon via "
    'the DeepSpeed config block "optimizer": {"type": "Muon", ...} instead of --optim muon.'
)


def is_dtensor(t) -> bool:
    """True for a ``torch.distributed.tensor.DTensor`` (checked by name: no import of torch.distributed)."""
    return type(t).__name__ == "DTensor"


__all__ = ["FLAT_PARAM_HINT", "is_dtensor"]
