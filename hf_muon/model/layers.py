"""Where a parameter sits in a model: transformer-layer depth and layer type, from its name."""

from __future__ import annotations

import re

_DEPTH = re.compile(r"\.(?:layers|h|layer|blocks|block)\.(\d+)\.")


def layer_info(name: str) -> tuple[int | None, str]:
    """(depth index, layer type) from a parameter name like ``model.layers.3.self_attn.q_proj.weight``."""
    m = _DEPTH.search("." + name)
    depth = int(m.group(1)) if m else None
    parts = [p for p in name.split(".") if p not in ("weight", "default", "base_layer")]
    kind = parts[-1] if parts else name
    return depth, kind
