"""The core type: a network as a weighted, layered DAG of units.

A :class:`LayeredDAG` holds *unit groups* (the input, the output of every Linear or
Conv layer, every residual sum) in topological order, and *edge blocks* between
them (:mod:`pathnet.graph.block` describes how a block stores its parameter).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pathnet._text import format_table
from pathnet.graph.block import EdgeBlock, UnitGroup

if TYPE_CHECKING:
    import networkx as nx

    from pathnet.mask import Mask

__all__ = ["EdgeBlock", "LayeredDAG", "UnitGroup"]


@dataclass(frozen=True, eq=False)
class LayeredDAG:
    """A neural network as a weighted DAG of unit groups joined by edge blocks.

    Build one from a torch model with :func:`pathnet.to_dag`. Groups are in
    topological order; group 0 is the input and the last group the output.

    Attributes
    ----------
    groups : tuple of UnitGroup
    blocks : tuple of EdgeBlock
        Sorted by target group, then source group.
    model_name : str
        The model class name, for display.
    input_shape : tuple of int
        Per-sample input shape the DAG was traced with.
    tied : dict of str to str
        Tied parameters: each name that shares its tensor with an earlier one maps
        to that earlier (canonical) name, e.g. ``{"b.weight": "a.weight"}``. Both
        names keep their blocks (a walk may cross either); the tensor counts once
        in :attr:`n_params` and :attr:`n_present`, and masks built by the DAG give
        every name of a tensor the same mask (the union of what its blocks keep).

    Examples
    --------
    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.mlp([4, 3, 2], seed=0))
    >>> [g.size for g in dag.groups]
    [4, 3, 2]
    >>> dag.n_params
    18

    A tensor shared by two modules is one tensor in two blocks:

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2))
    >>> net[1].weight = net[0].weight
    >>> tied = pathnet.to_dag(net, (3,))
    >>> tied.tied, tied.canonical("1.weight")
    ({'1.weight': '0.weight'}, '0.weight')
    >>> tied.n_params, tied.n_weights
    (24, 15)
    """

    groups: tuple[UnitGroup, ...]
    blocks: tuple[EdgeBlock, ...]
    model_name: str = "model"
    input_shape: tuple[int, ...] = ()
    tied: Mapping[str, str] = field(default_factory=dict)
    _param_index: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups, blocks = tuple(self.groups), tuple(self.blocks)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "tied", dict(self.tied))
        if len(groups) < 2:
            raise ValueError("pathnet.LayeredDAG: needs at least an input and an output group")
        if groups[0].kind != "input" or groups[-1].kind != "output":
            raise ValueError(
                "pathnet.LayeredDAG: the first group must be the input and the last the output, "
                f"got kinds {groups[0].kind!r} and {groups[-1].kind!r}"
            )
        index: dict[str, list[int]] = {}
        has_in = [False] * len(groups)
        has_out = [False] * len(groups)
        for b, block in enumerate(blocks):
            if block.target >= len(groups):
                raise ValueError(
                    f"pathnet.LayeredDAG: block {b} targets group {block.target}, "
                    f"but there are {len(groups)} groups"
                )
            n_out, n_in = block.shape
            src, dst = groups[block.source], groups[block.target]
            if (n_out, n_in) != (dst.size, src.size):
                raise ValueError(
                    f"pathnet.LayeredDAG: block {block.param or 'identity'!r} is {n_out}x{n_in} "
                    f"but joins {src.name!r} ({src.size} units) to {dst.name!r} ({dst.size} units)"
                )
            if block.param is not None:
                index.setdefault(block.param, []).append(b)
            has_out[block.source] = True
            has_in[block.target] = True
        for g, group in enumerate(groups):
            if g > 0 and not has_in[g]:
                raise ValueError(f"pathnet.LayeredDAG: group {group.name!r} has no incoming block")
            if g < len(groups) - 1 and not has_out[g]:
                raise ValueError(f"pathnet.LayeredDAG: group {group.name!r} has no outgoing block")
        for name, where in index.items():
            if len(where) > 1:
                _check_split(name, [blocks[b] for b in where])
        _check_tied(self.tied, index, blocks)
        object.__setattr__(self, "_param_index", index)

    # ---------------------------------------------------------------- basics
    @property
    def n_units(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def n_params(self) -> int:
        """Prunable weights (masked ones included), counted block by block.

        A tied tensor counts in each of its blocks (:attr:`n_weights` counts it
        once). Global element indices, block after block of ``block.n_params``
        elements, may run over more: a grouped conv's block also holds the
        elements outside each group, which do not exist.
        """
        return sum(b.n_weights for b in self.blocks)

    @property
    def n_present(self) -> int:
        """Unmasked prunable weights, counted block by block (a tied tensor in each
        of its blocks; :attr:`n_weights_present` counts it once)."""
        return sum(b.n_present for b in self.blocks)

    @property
    def n_weights(self) -> int:
        """Prunable weights (masked ones included), each tensor once.

        Differs from :attr:`n_params` only for tied parameters.
        """
        return sum(
            self.blocks[where[0]].param_size
            for name, where in self._param_index.items()
            if name not in self.tied
        )

    @property
    def n_weights_present(self) -> int:
        """Unmasked prunable weights, a tied tensor once (an element kept by any of
        its blocks counts)."""
        if not self.tied and all(len(w) == 1 for w in self._param_index.values()):
            return self.n_present
        return sum(int(m.sum()) for m in self._canonical_masks(self._present_elements()).values())

    @property
    def n_edges(self) -> int:
        """Present unit-to-unit edges (identity edges included)."""
        return sum(b.multiplicity.nnz for b in self.blocks)

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the prunable parameters, in block order, each once (tied names included)."""
        return tuple(self._param_index)

    def canonical(self, param: str) -> str:
        """The name that stands for ``param``'s tensor: itself unless it is tied."""
        return self.tied.get(param, param)

    @property
    def offsets(self) -> np.ndarray:
        """Global index of the first unit of each group (length ``len(groups) + 1``)."""
        return np.concatenate([[0], np.cumsum([g.size for g in self.groups])]).astype(np.int64)

    def block_of(self, param: str) -> EdgeBlock:
        """The (first) edge block that holds parameter ``param``.

        A layer that reads a channel concatenation has one block per concatenated
        input; :meth:`blocks_of` lists them all.
        """
        return self.blocks[self.blocks_of(param)[0]]

    def blocks_of(self, param: str) -> list[int]:
        """Indices of the blocks that hold elements of parameter ``param``."""
        try:
            return list(self._param_index[param])
        except KeyError:
            raise KeyError(
                f"pathnet.LayeredDAG: no block for parameter {param!r}; "
                f"the DAG has {list(self._param_index)}"
            ) from None

    def in_blocks(self, group: int) -> list[int]:
        """Indices of the blocks that end in ``group``."""
        return [b for b, blk in enumerate(self.blocks) if blk.target == group]

    def out_blocks(self, group: int) -> list[int]:
        """Indices of the blocks that start in ``group``."""
        return [b for b, blk in enumerate(self.blocks) if blk.source == group]

    def __repr__(self) -> str:
        return (
            f"LayeredDAG({self.model_name}: {len(self.groups)} groups, {len(self.blocks)} blocks, "
            f"{self.n_units} units, {self.n_weights_present}/{self.n_weights} params)"
        )

    # ----------------------------------------------------------------- masks
    def with_mask(self, mask: Mapping[str, Any] | None) -> LayeredDAG:
        """The same DAG with the masked-out parameter elements removed.

        ``mask`` maps parameter names to boolean arrays or tensors of the
        parameter's shape (a :class:`pathnet.Mask`). Every prunable parameter of
        the DAG must be present, and no other name; tied names must carry the
        same mask.
        """
        if mask is None:
            return self
        names = set(mask)
        missing = [p for p in self.params if p not in names]
        extra = sorted(names - set(self.params))
        if missing or extra:
            raise ValueError(
                "pathnet.LayeredDAG.with_mask: mask does not match the DAG's parameters"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )
        arrays: dict[str, np.ndarray] = {}
        for name in self.params:
            m = _as_bool_array(mask[name], name)
            shape = self.block_of(name).param_shape
            if m.shape != shape:
                raise ValueError(
                    f"pathnet.LayeredDAG.with_mask: mask for {name!r} has shape "
                    f"{m.shape}, the parameter has {shape}"
                )
            arrays[name] = m
        for name, canon in self.tied.items():
            if not np.array_equal(arrays[name], arrays[canon]):
                raise ValueError(
                    f"pathnet.LayeredDAG.with_mask: {name!r} and {canon!r} are one tied tensor "
                    "but their masks differ; give both names the same mask"
                )
        blocks = []
        for block in self.blocks:
            if block.param is None:
                blocks.append(block)
                continue
            em = block.from_param(arrays[block.param], fill=False)
            if block.element_mask is not None:
                em = em & block.element_mask
            blocks.append(replace(block, element_mask=np.ascontiguousarray(em)))
        return replace(self, blocks=tuple(blocks))

    def to_mask(self) -> Mask:
        """The DAG's element masks as a :class:`pathnet.Mask` (all True where unmasked)."""
        return self.mask_from_blocks(self._present_elements())

    def mask_from_elements(self, selected: Mapping[int, np.ndarray]) -> Mask:
        """Boolean masks from selected parameter elements.

        Parameters
        ----------
        selected : mapping of int to array of int
            Block index -> flat element indices into that block's ``values``
            (``(j * n_in + i) * n_elem + e``, the parameter's own flat index unless
            the block has a ``param_index``). Blocks not named select nothing. An
            element of a tied tensor selected through any of its names is kept
            under every name.
        """
        per_block: dict[int, np.ndarray] = {}
        for b, block in enumerate(self.blocks):
            if block.param is None:
                if b in selected and len(selected[b]):
                    raise ValueError(
                        f"pathnet.LayeredDAG.mask_from_elements: block {b} is an identity "
                        "shortcut and has no parameter to select"
                    )
                continue
            flat = np.zeros(block.n_params, dtype=bool)
            if b in selected:
                idx = np.asarray(selected[b], dtype=np.int64)
                if idx.size and (idx.min() < 0 or idx.max() >= block.n_params):
                    raise ValueError(
                        f"pathnet.LayeredDAG.mask_from_elements: element index out of range "
                        f"[0, {block.n_params}) for {block.param!r}"
                    )
                flat[idx] = True
                if block.param_index is not None:
                    flat &= block.param_index.reshape(-1) >= 0
            per_block[b] = flat.reshape(block.present_mask().shape)
        return self.mask_from_blocks(per_block)

    def mask_from_edges(self, selected: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> Mask:
        """Boolean masks that keep every unmasked element of the selected edges.

        ``selected`` maps a block index to ``(rows, cols)`` = (target unit, source unit).
        """
        per_block: dict[int, np.ndarray] = {}
        for b, block in enumerate(self.blocks):
            if block.param is None:
                continue
            keep = np.zeros(block.shape, dtype=bool)
            if b in selected:
                rows, cols = selected[b]
                keep[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
            present = block.present_mask()
            per_block[b] = np.broadcast_to(keep[:, :, None], present.shape) & present
        return self.mask_from_blocks(per_block)

    def elements_from_mask(self, mask: Mapping[str, Any]) -> dict[int, np.ndarray]:
        """Inverse of :meth:`mask_from_elements`: block index -> sorted flat element indices."""
        dag = self.with_mask(mask)
        return {
            b: np.flatnonzero(blk.present_mask().ravel())
            for b, blk in enumerate(dag.blocks)
            if blk.param is not None
        }

    def _present_elements(self) -> dict[int, np.ndarray]:
        return {b: blk.present_mask() for b, blk in enumerate(self.blocks) if blk.param is not None}

    def _canonical_masks(self, per_block: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-block element arrays -> one parameter-shaped mask per tensor (OR of its blocks)."""
        out: dict[str, np.ndarray] = {}
        for b, keep in per_block.items():
            block = self.blocks[b]
            assert block.param is not None
            name = self.canonical(block.param)
            m = block.to_param(keep, fill=False)
            out[name] = out[name] | m if name in out else m.copy()
        return out

    def mask_from_blocks(self, per_block: Mapping[int, np.ndarray]) -> Mask:
        """Boolean masks from per-block element arrays (each shaped like the block's ``values``).

        Blocks of one tensor (tied names, a layer reading a concatenation) are merged:
        an element kept through any of them is kept under every name, and the Mask
        records the tied names so the shared tensor is counted once.
        """
        from pathnet.mask import Mask

        masks = self._canonical_masks(per_block)
        groups: dict[str, list[str]] = {}
        for name in self.params:
            groups.setdefault(self.canonical(name), []).append(name)
        tied = [tuple(g) for g in groups.values() if len(g) > 1]
        return Mask({name: masks[self.canonical(name)] for name in self.params}, tied=tied)

    # ------------------------------------------------------------ conversion
    def to_networkx(self, *, force: bool = False, max_edges: int = 200_000) -> nx.MultiDiGraph:
        """A networkx graph with one node per unit, for small nets.

        Nodes are ``(group_index, unit_index)`` with attributes ``group`` (name) and
        ``layer`` (group index). Every present edge becomes one networkx edge with
        attributes ``weight`` (sum of ``|w|`` over its unmasked elements), ``weight2``
        (sum of ``w**2``), ``multiplicity`` (number of unmasked elements),
        ``parameter`` (name or None) and ``block``. Parallel blocks between the
        same groups give parallel edges, hence a ``MultiDiGraph``.

        Raises
        ------
        ValueError
            If the DAG has more than ``max_edges`` edges and ``force`` is False.
        """
        import networkx as nx

        n_edges = self.n_edges
        if n_edges > max_edges and not force:
            raise ValueError(
                f"pathnet.LayeredDAG.to_networkx: {n_edges:,} edges is more than max_edges="
                f"{max_edges:,}; networkx needs ~500 bytes per edge. Pass force=True to build it anyway."
            )
        graph = nx.MultiDiGraph(model=self.model_name)
        for g, group in enumerate(self.groups):
            graph.add_nodes_from(((g, u) for u in range(group.size)), group=group.name, layer=g)
        for b, block in enumerate(self.blocks):
            mult = block.multiplicity.tocoo()
            w1 = block.abs_weight.tocsr()
            w2 = block.sq_weight.tocsr()
            for j, i, m in zip(mult.row, mult.col, mult.data):
                graph.add_edge(
                    (block.source, int(i)),
                    (block.target, int(j)),
                    weight=float(w1[j, i]),
                    weight2=float(w2[j, i]),
                    multiplicity=int(m),
                    parameter=block.param,
                    block=b,
                )
        return graph

    # --------------------------------------------------------------- display
    def summary_rows(self) -> Iterator[dict[str, Any]]:
        for g, group in enumerate(self.groups):
            ins = self.in_blocks(g)
            yield {
                "group": g,
                "name": group.name,
                "kind": group.kind,
                "units": group.size,
                "shape": "x".join(map(str, group.shape)),
                "in_from": ",".join(str(self.blocks[b].source) for b in ins),
                "edges_in": sum(self.blocks[b].multiplicity.nnz for b in ins),
                "params_in": sum(self.blocks[b].n_present for b in ins),
                "via": ",".join(self.blocks[b].param or "identity" for b in ins),
            }

    def summary(self) -> str:
        """A printable table: one row per unit group with its incoming blocks."""
        rows = list(self.summary_rows())
        cols = [
            "group",
            "name",
            "kind",
            "units",
            "shape",
            "in_from",
            "edges_in",
            "params_in",
            "via",
        ]
        return format_table(rows, cols) + (
            f"\n{len(self.groups)} groups, {len(self.blocks)} edge blocks, {self.n_units:,} units, "
            f"{self.n_edges:,} edges, {self.n_weights_present:,} of {self.n_weights:,} prunable parameters"
        )


def _check_split(name: str, blocks: list[EdgeBlock]) -> None:
    """One parameter in several blocks (a layer reading a concatenation): the blocks
    must agree on the parameter's shape and hold disjoint elements of it."""
    shapes = {b.param_shape for b in blocks}
    if len(shapes) > 1 or any(b.param_index is None for b in blocks):
        raise ValueError(
            f"pathnet.LayeredDAG: parameter {name!r} appears in {len(blocks)} blocks; "
            "blocks that share a parameter need a param_index each and one param_shape"
        )
    idx = np.concatenate(
        [b.param_index[b.param_index >= 0] for b in blocks if b.param_index is not None]
    )
    if np.unique(idx).size != idx.size:
        raise ValueError(
            f"pathnet.LayeredDAG: blocks of parameter {name!r} hold the same element twice; "
            "a tensor used twice is a tie (LayeredDAG.tied), not one name"
        )


def _check_tied(
    tied: Mapping[str, str], index: Mapping[str, list[int]], blocks: tuple[EdgeBlock, ...]
) -> None:
    for name, canon in tied.items():
        if name not in index or canon not in index:
            unknown = name if name not in index else canon
            raise ValueError(
                f"pathnet.LayeredDAG: tied names a parameter {unknown!r} with no block"
            )
        if canon in tied or canon == name:
            raise ValueError(
                f"pathnet.LayeredDAG: tied maps {name!r} to {canon!r}, which must be a canonical "
                "name (not tied itself)"
            )
        if blocks[index[name][0]].param_shape != blocks[index[canon][0]].param_shape:
            raise ValueError(
                f"pathnet.LayeredDAG: tied parameters {name!r} and {canon!r} differ in shape"
            )


def _as_bool_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise ValueError(f"pathnet: mask for {name!r} must be boolean, got dtype {arr.dtype}")
    return arr
