"""Where the pieces of a sharded (DTensor) Muon matrix live: one place reads DTensor placements.

A job's tensor is a matrix ``(m, n)`` or an expert stack ``(E, m, n)``. For each mesh dim its placement is

* ``Replicate()``: every rank along that dim holds the same data (HSDP's replicate dim, TP-replicated weights):
  nothing to do there (the gradient reduction over that dim is FSDP's / DDP's business);
* ``Shard(0)`` of an expert stack (expert parallel, FSDP2's default on 3-D): whole experts per rank, local;
* ``Shard(d)`` / ``_StridedShard(d)`` of a matrix dim (FSDP2 rows, TP column- or row-parallel, FSDP2 + TP,
  experts sharded on an inner dim): a *gather* dim. The ranks that differ only in their gather-dim coordinates
  hold the pieces of the same matrices; each matrix is assembled on one owner of that group, orthogonalized
  once and its pieces sent back (:mod:`.sharded`).

Anything else (``Partial``: a gradient whose reduction is still pending; unknown placement types) raises
:class:`LayoutError` naming the placements and what is supported. Which indices of the global matrix a rank holds
is computed from the placements alone (``torch.chunk`` semantics, strided shards included), for every rank of the
group, with no communication.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED = (
    "Replicate(), Shard(0)/Shard(1) of a matrix (FSDP2 rows, tensor-parallel columns/rows, FSDP2 + TP "
    "strided shards), Shard(0)/Shard(1)/Shard(2) of a 3-D expert stack (experts by expert or on an inner "
    "dim), in any combination on a 1-D or N-D device mesh"
)


class LayoutError(ValueError):
    """A DTensor placement hf_muon cannot orthogonalize."""


def mesh_key(mesh) -> tuple:
    """Identifies a mesh by its rank layout (two mesh objects over the same ranks exchange as one)."""
    return (tuple(mesh.mesh.shape), tuple(mesh.mesh.flatten().tolist()), tuple(mesh.mesh_dim_names or ()))


def describe(t) -> str:
    mesh = t.device_mesh
    names = f" {tuple(mesh.mesh_dim_names)}" if mesh.mesh_dim_names else ""
    return f"shape {tuple(t.shape)}, placements {tuple(t.placements)} on a {tuple(mesh.mesh.shape)} mesh{names}"


@dataclass(frozen=True)
class Layout:
    """The layout of one DTensor job: which mesh dims shard matrix dims (gathered) and the rest."""

    mesh: object
    placements: tuple
    shape: tuple
    gather: tuple[int, ...]  # mesh dims sharding a matrix dim, in mesh order

    @property
    def key(self) -> tuple:
        """Jobs with equal keys exchange within the same groups."""
        return (mesh_key(self.mesh), self.gather)

    def matrix_dims(self) -> tuple[int, ...]:
        return (len(self.shape) - 2, len(self.shape) - 1)


def classify(t) -> Layout:
    """The :class:`Layout` of a DTensor job, or :class:`LayoutError`."""
    from torch.distributed.tensor import Replicate

    mesh, placements = t.device_mesh, tuple(t.placements)
    matrix = (t.ndim - 2, t.ndim - 1)
    gather = []
    for md, pl in enumerate(placements):
        if isinstance(pl, Replicate):
            continue
        dim = _shard_dim(pl, t.ndim)
        if dim is not None:
            if dim in matrix:
                if mesh.size(md) > 1:
                    gather.append(md)
                continue
            if t.ndim == 3 and dim == 0:
                continue  # whole experts on this rank
        kind = "a pending reduction (Partial)" if pl.is_partial() else f"placement {pl}"
        raise LayoutError(f"{describe(t)}: {kind} on mesh dim {md} is not supported. Supported: {SUPPORTED}.")
    return Layout(mesh, placements, tuple(t.shape), tuple(gather))


def _indices(layout: Layout, coord: tuple[int, ...], dim: int) -> torch.Tensor:
    """Global indices along matrix dim ``dim`` held by the rank at mesh coordinate ``coord`` (placements are
    applied in mesh order, as DTensor does; a strided shard's split factor accounts for the later dims)."""
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    idx = torch.arange(layout.shape[dim])
    for md, pl in enumerate(layout.placements):
        if _shard_dim(pl, len(layout.shape)) == dim:
            along = _StridedShard(0, split_factor=pl.split_factor) if _strided(pl) else Shard(0)
            chunks, _ = along._split_tensor(idx, layout.mesh.size(md), with_padding=False, contiguous=False)
            idx = chunks[coord[md]] if coord[md] < len(chunks) else idx[:0]
    return idx


def _strided(pl) -> bool:
    return type(pl).__name__ == "_StridedShard"


def _shard_dim(pl, ndim: int) -> int | None:
    """The tensor dim a ``Shard`` / ``_StridedShard`` placement splits (None for any other placement)."""
    if not (pl.is_shard() or _strided(pl)):
        return None
    return pl.dim if pl.dim >= 0 else pl.dim + ndim


def as_slice(idx: torch.Tensor):
    """A contiguous index run as a slice (the common case), else the index tensor itself."""
    n = idx.numel()
    if n == 0:
        return slice(0, 0)
    start = int(idx[0])
    if int(idx[-1]) - start == n - 1 and (n < 3 or bool((idx.diff() == 1).all())):
        return slice(start, start + n)
    return idx


@dataclass
class Piece:
    """Where one rank's local tensor sits in the assembled tensor (expert dim local, matrix dims global)."""

    index: tuple  # per matrix dim: a slice or an index tensor
    shape: tuple  # the local tensor's shape

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def pieces(layout: Layout, coords: list[tuple[int, ...]], experts: int | None) -> list[Piece]:
    """The piece held by each rank of a gather group (given by mesh coordinates); ``experts`` is the local
    expert count of a 3-D job (the same on every rank of the group: they differ only in gather dims)."""
    out = []
    for c in coords:
        index = tuple(as_slice(_indices(layout, c, d)) for d in layout.matrix_dims())
        sizes = tuple(ix.stop - ix.start if isinstance(ix, slice) else ix.numel() for ix in index)
        out.append(Piece(index, ((experts,) if experts is not None else ()) + sizes))
    return out


def assembled_shape(layout: Layout, experts: int | None) -> tuple:
    return ((experts,) if experts is not None else ()) + layout.shape[-2:]


def _indexer(piece: Piece, ndim: int):
    index = piece.index
    if all(isinstance(ix, slice) for ix in index):
        return (slice(None),) * (ndim - 2) + index
    rows, cols = (torch.arange(ix.start, ix.stop) if isinstance(ix, slice) else ix for ix in index)
    return (slice(None),) * (ndim - 2) + (rows[:, None], cols[None, :])


def place(full: torch.Tensor, piece: Piece, values: torch.Tensor) -> None:
    full[_indexer(piece, full.ndim)] = values.view(piece.shape)


def take(full: torch.Tensor, piece: Piece) -> torch.Tensor:
    return full[_indexer(piece, full.ndim)]


# ------------------------------------------------------------------ groups
_GROUPS: dict = {}


def gather_group(layout: Layout):
    """The process group of the ranks sharing this rank's coordinates outside the gather dims, its global ranks
    (in group-rank order) and each one's coordinate on ``layout.mesh``. One gather dim: the mesh's own group;
    several (FSDP2 + TP: rows and columns sharded): a group of that slice, created once by its members only."""
    import torch.distributed as dist

    mesh = layout.mesh
    me = tuple(mesh.get_coordinate())
    key = (mesh_key(mesh), layout.gather, me)
    if key not in _GROUPS:
        grid = mesh.mesh
        coord_of = {int(grid[c]): c for c in _all_coords(tuple(grid.shape))}
        if len(layout.gather) == 1:
            pg = mesh.get_group(layout.gather[0])
        else:
            ranks = sorted(
                r for r, c in coord_of.items() if all(c[d] == me[d] for d in range(grid.ndim) if d not in layout.gather)
            )
            pg = dist.new_group(ranks, use_local_synchronization=True)
        ranks = [dist.get_global_rank(pg, g) for g in range(dist.get_world_size(pg))]
        _GROUPS[key] = (pg, ranks, {r: coord_of[r] for r in ranks})
    return _GROUPS[key]


def _all_coords(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    out = [()]
    for n in shape:
        out = [c + (i,) for c in out for i in range(n)]
    return out


__all__ = [
    "SUPPORTED",
    "Layout",
    "LayoutError",
    "Piece",
    "as_slice",
    "assembled_shape",
    "classify",
    "describe",
    "gather_group",
    "mesh_key",
    "pieces",
    "place",
    "take",
]
