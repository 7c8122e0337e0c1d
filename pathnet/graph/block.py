"""The parts of a :class:`~pathnet.graph.dag.LayeredDAG`: unit groups and edge blocks.

A *unit group* is the channels (or features) of one activation tensor: the input,
the output of every Linear or Conv layer, every residual sum. An edge block stores the parameter it comes from as a dense array of shape
``(n_out, n_in, n_elem)``: edge ``i -> j`` holds the ``n_elem`` parameter elements
``values[j, i, :]`` (one for a Linear weight, ``kh*kw`` for a conv kernel, ``H*W``
for a Linear weight that reads a flattened conv output). Because torch lays
Linear and Conv weights out as ``(out, in, ...)``, element ``(j, i, e)`` is
element ``(j * n_in + i) * n_elem + e`` of the flattened parameter, which is what
makes selected edges map back to per-parameter masks.

Three cases break that one-to-one layout, and an optional ``param_index`` array
on the block says where each element lives in its parameter instead (``-1``: the
element does not exist and is always masked out):

* a grouped or depthwise conv: the block is dense over all input channels and the
  elements outside a channel's group do not exist;
* a layer that reads a channel concatenation (``torch.cat``): its weight is split
  into one block per concatenated input, each holding a slice of the parameter;
* tied parameters (``b.weight = a.weight``): both names keep their blocks, and
  :attr:`LayeredDAG.tied` maps ``"b.weight"`` to ``"a.weight"``: the tensor is
  counted once and every name that shares it gets the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["EdgeBlock", "UnitGroup"]

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
    param_index : numpy.ndarray or None
        Int64 array like ``values``: the flat index of each element in the
        parameter, ``-1`` where the element does not exist (then always masked
        out). ``None``: element ``(j, i, e)`` is flat index ``(j*n_in + i)*n_elem + e``.
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
    param_index: np.ndarray | None = None

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
        if self.param_index is not None:
            self._check_param_index(where)
        elif int(np.prod(self.param_shape, dtype=np.int64)) != self.values.size:
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
        if self.param_index is not None:
            exists = self.param_index >= 0
            em = exists if self.element_mask is None else self.element_mask & exists
            object.__setattr__(self, "element_mask", np.ascontiguousarray(em))

    def _check_param_index(self, where: str) -> None:
        idx, size = self.param_index, self.param_size
        assert idx is not None and self.values is not None
        if idx.shape != self.values.shape or idx.dtype != np.int64:
            raise ValueError(
                f"{where}: param_index must be an int64 array of shape {self.values.shape}, "
                f"got {idx.dtype} {idx.shape}"
            )
        valid = idx[idx >= 0]
        if valid.size and (valid.max() >= size or np.unique(valid).size != valid.size):
            raise ValueError(
                f"{where}: param_index must hold distinct indices in [0, {size}) or -1"
            )
        if (idx < -1).any():
            raise ValueError(f"{where}: param_index holds values below -1")

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
    def param_size(self) -> int:
        """Number of elements of the parameter (0 for identity)."""
        return 0 if self.param is None else int(np.prod(self.param_shape, dtype=np.int64))

    def to_param(self, arr: np.ndarray, fill: Any = 0) -> np.ndarray:
        """An array like ``values`` laid out as the parameter (``param_shape``).

        Parameter elements this block does not hold get ``fill``.

        Examples
        --------
        A grouped conv's block is dense over all channel pairs:

        >>> import pathnet
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2), nn.Flatten(), nn.Linear(4, 1))
        >>> block = pathnet.to_dag(net, (4, 1, 1)).block_of("0.weight")
        >>> block.values.shape, block.param_shape, block.n_weights
        ((4, 4, 1), (4, 2, 1, 1), 8)
        >>> bool((block.to_param(block.values) == net[0].weight.detach().numpy()).all())
        True
        """
        arr = np.asarray(arr)
        if self.param_index is None:
            return arr.reshape(self.param_shape)
        out = np.full(self.param_size, fill, dtype=arr.dtype)
        exists = self.param_index >= 0
        out[self.param_index[exists]] = arr[exists]
        return out.reshape(self.param_shape)

    def from_param(self, arr: Any, fill: Any = 0) -> np.ndarray:
        """Inverse of :meth:`to_param`: a parameter-shaped array laid out like ``values``."""
        flat = np.asarray(arr).reshape(-1)
        if self.param_index is None:
            assert self.values is not None
            return flat.reshape(self.values.shape)
        exists = self.param_index >= 0
        out = np.full(self.param_index.shape, fill, dtype=flat.dtype)
        out[exists] = flat[self.param_index[exists]]
        return out

    @property
    def prunable(self) -> bool:
        return self.kind != "identity"

    @property
    def n_params(self) -> int:
        """Number of elements of ``values`` (0 for identity).

        The parameter's own size (:attr:`param_size`) differs when ``param_index``
        is set; flat element indices of a block always run over ``values``.
        """
        return 0 if self.values is None else self.values.size

    @cached_property
    def n_weights(self) -> int:
        """Parameter elements this block holds: ``n_params`` less the elements that
        do not exist (``param_index == -1``)."""
        if self.param_index is None:
            return self.n_params
        return int(np.count_nonzero(self.param_index >= 0))

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
