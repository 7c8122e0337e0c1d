"""The core type: a network as a weighted, layered DAG of units.

A :class:`LayeredDAG` holds *unit groups* (the input, the output of every Linear or
Conv2d, every residual sum) in topological order, and *edge blocks* between them.
An edge block stores the parameter it comes from as a dense array of shape
``(n_out, n_in, n_elem)``: edge ``i -> j`` holds the ``n_elem`` parameter elements
``values[j, i, :]`` (one for a Linear weight, ``kh*kw`` for a conv kernel, ``H*W``
for a Linear weight that reads a flattened conv output). Because torch lays
Linear and Conv2d weights out as ``(out, in, ...)``, element ``(j, i, e)`` is
element ``(j * n_in + i) * n_elem + e`` of the flattened parameter, which is what
makes selected edges map back to per-parameter masks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from pathnet._text import format_table

if TYPE_CHECKING:
    import networkx as nx

    from pathnet.mask import Mask

__all__ = ["EdgeBlock", "LayeredDAG", "UnitGroup"]

GroupKind = Literal["input", "hidden", "sum", "output"]
BlockKind = Literal["linear", "conv", "identity"]

_GROUP_KINDS = ("input", "hidden", "sum", "output")
_BLOCK_KINDS = ("linear", "conv", "identity")


@dataclass(frozen=True)
class UnitGroup:
    """A set of units: the channels (or features) of one activation tensor.

    Attributes
    ----------
    name : str
        Where the tensor comes from (module path, ``"input"``, or ``"<path>.add"``).
    size : int
        Number of units.
    kind : {"input", "hidden", "sum", "output"}
        ``"sum"`` marks a residual addition.
    shape : tuple of int
        Per-sample shape of the activation tensor (channels first).
    """

    name: str
    size: int
    kind: GroupKind
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _GROUP_KINDS:
            raise ValueError(
                f"pathnet.UnitGroup: kind must be one of {_GROUP_KINDS}, got {self.kind!r}"
            )
        if int(self.size) < 1:
            raise ValueError(f"pathnet.UnitGroup {self.name!r}: size must be >= 1, got {self.size}")


@dataclass(frozen=True, eq=False)
class EdgeBlock:
    """All edges from one unit group to another that come from one parameter.

    Attributes
    ----------
    source, target : int
        Indices of the source and target groups (``source < target``).
    kind : {"linear", "conv", "identity"}
        ``"identity"`` is a fixed, unprunable weight-1 edge per channel (a residual
        shortcut); it has no parameter.
    param : str or None
        Name of the parameter in ``model.named_parameters()``.
    param_shape : tuple of int
        Shape of that parameter.
    kernel_shape : tuple of int
        Shape of the elements of one edge: ``(kh, kw)`` for a conv, ``(H*W,)`` for a
        Linear after a flatten, ``()`` for a plain Linear weight.
    values : numpy.ndarray
        ``(n_out, n_in, n_elem)`` copy of the parameter; ``None`` for identity.
    element_mask : numpy.ndarray or None
        Boolean array like ``values``; ``None`` means every element is present.
    n_units : int
        Number of channels of an identity block (``n_out == n_in``).
    """

    source: int
    target: int
    kind: BlockKind
    param: str | None
    param_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    values: np.ndarray | None
    element_mask: np.ndarray | None = None
    n_units: int = 0

    def __post_init__(self) -> None:
        where = f"pathnet.EdgeBlock {self.param or 'identity'!r}"
        if self.kind not in _BLOCK_KINDS:
            raise ValueError(f"{where}: kind must be one of {_BLOCK_KINDS}, got {self.kind!r}")
        if not 0 <= self.source < self.target:
            raise ValueError(
                f"{where}: edges must go forward (source < target), got {self.source} -> {self.target}"
            )
        if self.kind == "identity":
            if self.values is not None or self.param is not None or self.n_units < 1:
                raise ValueError(f"{where}: an identity block has no parameter and n_units >= 1")
            return
        if self.param is None or self.values is None:
            raise ValueError(f"{where}: a {self.kind} block needs a parameter name and values")
        if self.values.ndim != 3:
            raise ValueError(
                f"{where}: values must be (n_out, n_in, n_elem), got {self.values.shape}"
            )
        if int(np.prod(self.kernel_shape, dtype=np.int64)) != self.values.shape[2]:
            raise ValueError(
                f"{where}: kernel_shape {self.kernel_shape} does not match n_elem {self.values.shape[2]}"
            )
        if int(np.prod(self.param_shape, dtype=np.int64)) != self.values.size:
            raise ValueError(
                f"{where}: param_shape {self.param_shape} does not match values {self.values.shape}"
            )
        if self.element_mask is not None and (
            self.element_mask.shape != self.values.shape or self.element_mask.dtype != np.bool_
        ):
            raise ValueError(
                f"{where}: element_mask must be a bool array of shape {self.values.shape}, "
                f"got {self.element_mask.dtype} {self.element_mask.shape}"
            )

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)``."""
        if self.values is None:
            return (self.n_units, self.n_units)
        return (self.values.shape[0], self.values.shape[1])

    @property
    def n_elem(self) -> int:
        """Parameter elements per edge (1 for Linear and identity, kh*kw for conv)."""
        return 1 if self.values is None else self.values.shape[2]

    @property
    def prunable(self) -> bool:
        return self.kind != "identity"

    @property
    def n_params(self) -> int:
        """Number of prunable parameter elements (0 for identity)."""
        return 0 if self.values is None else self.values.size

    @cached_property
    def n_present(self) -> int:
        """Number of unmasked parameter elements."""
        if self.values is None:
            return 0
        return self.values.size if self.element_mask is None else int(self.element_mask.sum())

    # -------------------------------------------------------- derived matrices
    @cached_property
    def _sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One pass over the elements: per present edge, (multiplicity, sum |w|, sum w^2),
        with the CSR ``indices`` and ``indptr`` of the present edges."""
        from pathnet._kernels.edges import edge_sums

        assert self.values is not None
        n_out, n_in, n_elem = self.values.shape
        vals = self.values.reshape(n_out * n_in, n_elem)
        em = self.element_mask
        mask = em.reshape(n_out * n_in, n_elem) if em is not None else np.ones((1, 1), bool)
        mult = np.empty(n_out * n_in)
        s1 = np.empty(n_out * n_in)
        s2 = np.empty(n_out * n_in)
        edge_sums(vals, mask, em is not None, mult, s1, s2)
        if em is None:
            edges = np.arange(n_out * n_in, dtype=np.int64)
        else:
            edges = np.flatnonzero(mult)
            mult, s1, s2 = mult[edges], s1[edges], s2[edges]
        rows = edges // n_in
        cols = (edges - rows * n_in).astype(np.int64)
        indptr = np.zeros(n_out + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
        return mult, s1, s2, cols, indptr

    def _edge_sums(self, p: int) -> sp.csr_matrix:
        """Per-edge sums of ``|w|**p`` over unmasked elements, as CSR (n_out x n_in).

        The structure holds exactly the edges with at least one unmasked element.
        """
        mult, s1, s2, cols, indptr = self._sums
        data = (mult, s1, s2)[p]
        if p and not np.isfinite(data).all():
            assert self.values is not None
            em = self.element_mask
            present = self.values if em is None else self.values[em]
            bad = int(np.count_nonzero(~np.isfinite(present)))
            if bad:  # to_dag refuses these; a DAG built or edited by hand may hold them
                raise ValueError(
                    f"pathnet.EdgeBlock {self.param!r}: holds {bad} NaN/Inf values; sums of "
                    "path products need finite weights"
                )
        return sp.csr_matrix((data, cols, indptr), shape=self.shape)

    @cached_property
    def multiplicity(self) -> sp.csr_matrix:
        """Number of unmasked parameter elements per edge (float64 CSR)."""
        if self.values is None:
            return sp.identity(self.n_units, dtype=np.float64, format="csr")
        return self._edge_sums(0)

    @cached_property
    def abs_weight(self) -> sp.csr_matrix:
        """Edge weight for walks and products: sum of ``|w|`` over unmasked elements."""
        if self.values is None:
            return sp.identity(self.n_units, dtype=np.float64, format="csr")
        return self._edge_sums(1)

    @cached_property
    def sq_weight(self) -> sp.csr_matrix:
        """Squared edge weight: sum of ``w**2`` over unmasked elements."""
        if self.values is None:
            return sp.identity(self.n_units, dtype=np.float64, format="csr")
        return self._edge_sums(2)

    def weight(self, p: int = 1) -> sp.csr_matrix:
        """Sum of ``|w|**p`` over the unmasked elements of each edge, for ``p`` in 0, 1, 2."""
        if p == 0:
            return self.multiplicity
        if p == 1:
            return self.abs_weight
        if p == 2:
            return self.sq_weight
        raise ValueError(f"pathnet.EdgeBlock.weight: p must be 0, 1 or 2, got {p!r}")

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, cols)`` = (target unit, source unit) of every present edge."""
        m = self.multiplicity.tocoo()
        return m.row.astype(np.int64), m.col.astype(np.int64)

    def present_mask(self) -> np.ndarray:
        """Boolean ``(n_out, n_in, n_elem)`` array of unmasked elements."""
        assert self.values is not None
        if self.element_mask is None:
            return np.ones(self.values.shape, dtype=bool)
        return self.element_mask


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

    Examples
    --------
    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.mlp([4, 3, 2], seed=0))
    >>> [g.size for g in dag.groups]
    [4, 3, 2]
    >>> dag.n_params
    18
    """

    groups: tuple[UnitGroup, ...]
    blocks: tuple[EdgeBlock, ...]
    model_name: str = "model"
    input_shape: tuple[int, ...] = ()
    _param_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups, blocks = tuple(self.groups), tuple(self.blocks)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "blocks", blocks)
        if len(groups) < 2:
            raise ValueError("pathnet.LayeredDAG: needs at least an input and an output group")
        if groups[0].kind != "input" or groups[-1].kind != "output":
            raise ValueError(
                "pathnet.LayeredDAG: the first group must be the input and the last the output, "
                f"got kinds {groups[0].kind!r} and {groups[-1].kind!r}"
            )
        index: dict[str, int] = {}
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
                if block.param in index:
                    raise ValueError(
                        f"pathnet.LayeredDAG: parameter {block.param!r} appears in two blocks"
                    )
                index[block.param] = b
            has_out[block.source] = True
            has_in[block.target] = True
        for g, group in enumerate(groups):
            if g > 0 and not has_in[g]:
                raise ValueError(f"pathnet.LayeredDAG: group {group.name!r} has no incoming block")
            if g < len(groups) - 1 and not has_out[g]:
                raise ValueError(f"pathnet.LayeredDAG: group {group.name!r} has no outgoing block")
        object.__setattr__(self, "_param_index", index)

    # ---------------------------------------------------------------- basics
    @property
    def n_units(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def n_params(self) -> int:
        """Total prunable parameter elements (masked ones included)."""
        return sum(b.n_params for b in self.blocks)

    @property
    def n_present(self) -> int:
        """Unmasked prunable parameter elements."""
        return sum(b.n_present for b in self.blocks)

    @property
    def n_edges(self) -> int:
        """Present unit-to-unit edges (identity edges included)."""
        return sum(b.multiplicity.nnz for b in self.blocks)

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the prunable parameters, in block order."""
        return tuple(b.param for b in self.blocks if b.param is not None)

    @property
    def offsets(self) -> np.ndarray:
        """Global index of the first unit of each group (length ``len(groups) + 1``)."""
        return np.concatenate([[0], np.cumsum([g.size for g in self.groups])]).astype(np.int64)

    def block_of(self, param: str) -> EdgeBlock:
        """The edge block that holds parameter ``param``."""
        try:
            return self.blocks[self._param_index[param]]
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
            f"{self.n_units} units, {self.n_present}/{self.n_params} params)"
        )

    # ----------------------------------------------------------------- masks
    def with_mask(self, mask: Mapping[str, Any] | None) -> LayeredDAG:
        """The same DAG with the masked-out parameter elements removed.

        ``mask`` maps parameter names to boolean arrays or tensors of the
        parameter's shape (a :class:`pathnet.Mask`). Every prunable parameter of
        the DAG must be present, and no other name.
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
        blocks = []
        for block in self.blocks:
            if block.param is None:
                blocks.append(block)
                continue
            m = _as_bool_array(mask[block.param], block.param)
            if m.shape != block.param_shape:
                raise ValueError(
                    f"pathnet.LayeredDAG.with_mask: mask for {block.param!r} has shape "
                    f"{m.shape}, the parameter has {block.param_shape}"
                )
            assert block.values is not None
            em = m.reshape(block.values.shape)
            if block.element_mask is not None:
                em = em & block.element_mask
            blocks.append(replace(block, element_mask=np.ascontiguousarray(em)))
        return replace(self, blocks=tuple(blocks))

    def to_mask(self) -> Mask:
        """The DAG's element masks as a :class:`pathnet.Mask` (all True where unmasked)."""
        from pathnet.mask import Mask

        return Mask(
            {
                b.param: b.present_mask().reshape(b.param_shape)
                for b in self.blocks
                if b.param is not None
            }
        )

    def mask_from_elements(self, selected: Mapping[int, np.ndarray]) -> Mask:
        """Boolean masks from selected parameter elements.

        Parameters
        ----------
        selected : mapping of int to array of int
            Block index -> flat element indices into that block's parameter
            (``(j * n_in + i) * n_elem + e``). Blocks not named select nothing.
        """
        from pathnet.mask import Mask

        out: dict[str, np.ndarray] = {}
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
            out[block.param] = flat.reshape(block.param_shape)
        return Mask(out)

    def mask_from_edges(self, selected: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> Mask:
        """Boolean masks that keep every unmasked element of the selected edges.

        ``selected`` maps a block index to ``(rows, cols)`` = (target unit, source unit).
        """
        from pathnet.mask import Mask

        out: dict[str, np.ndarray] = {}
        for b, block in enumerate(self.blocks):
            if block.param is None:
                continue
            keep = np.zeros(block.shape, dtype=bool)
            if b in selected:
                rows, cols = selected[b]
                keep[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = True
            el = (
                np.broadcast_to(keep[:, :, None], block.present_mask().shape) & block.present_mask()
            )
            out[block.param] = el.reshape(block.param_shape)
        return Mask(out)

    def elements_from_mask(self, mask: Mapping[str, Any]) -> dict[int, np.ndarray]:
        """Inverse of :meth:`mask_from_elements`: block index -> sorted flat element indices."""
        dag = self.with_mask(mask)
        return {
            b: np.flatnonzero(blk.present_mask().ravel())
            for b, blk in enumerate(dag.blocks)
            if blk.param is not None
        }

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
            f"{self.n_edges:,} edges, {self.n_present:,} of {self.n_params:,} prunable parameters"
        )


def _as_bool_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise ValueError(f"pathnet: mask for {name!r} must be boolean, got dtype {arr.dtype}")
    return arr
