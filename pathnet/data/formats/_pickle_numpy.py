"""numpy arrays, dtypes and scalars in a data pickle, rebuilt by checked code.

numpy writes an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by BUILD with
``(version, shape, dtype, is_fortran, data)``, a dtype as ``dtype("u1", False, True)``
followed by BUILD with its byte order, and (protocol 5) an array as
``_frombuffer(data, dtype, shape, order)``. Here each becomes a placeholder or a fresh
array built with :func:`numpy.frombuffer` from exactly as many bytes as the file holds;
numpy's own ``__setstate__`` (which trusts its input) never runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pathnet.data.formats._pickle_vm import (
    DTYPE_KINDS,
    MAX_DIMS,
    Args,
    Global,
    Handler,
    Machine,
    Pending,
    Refused,
)

__all__ = ["HANDLERS"]


def _globals() -> dict[tuple[str, str], Global]:
    table: dict[tuple[str, str], Global] = {}
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray", "_reconstruct"] = Global("reconstruct", "_reconstruct")
        table[f"{core}.multiarray", "scalar"] = Global("scalar", "numpy scalar")
        table[f"{core}.numeric", "_frombuffer"] = Global("frombuffer", "_frombuffer")
    table["numpy", "ndarray"] = Global("ndarray", "numpy.ndarray")
    table["numpy", "dtype"] = Global("dtype", "numpy.dtype")
    table["_codecs", "encode"] = Global("encode", "_codecs.encode")
    for mod in ("builtins", "__builtin__"):
        table[mod, "set"] = Global("set", "set")
        table[mod, "frozenset"] = Global("frozenset", "frozenset")
    return table


GLOBALS = _globals()


def plain_dtype(spec: Any) -> np.dtype[Any]:
    """A plain numpy dtype from a type string ('u1', '<f8', 'S10', b'i4'), nothing else."""
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", "replace")
    if not isinstance(spec, str) or not 0 < len(spec) <= 16:
        raise Refused(f"numpy.dtype: expected a short type string, got {type(spec).__name__}")
    try:
        dt = np.dtype(spec)
    except (TypeError, ValueError) as exc:
        raise Refused(f"numpy.dtype: bad type string {spec!r}") from exc
    if dt.hasobject:
        raise Refused("object arrays are not allowed")
    if dt.kind not in DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise Refused(f"numpy.dtype: only plain number, string and void types, got {spec!r}")
    return dt


def checked_shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > MAX_DIMS:
        raise Refused(f"array shape must be a tuple of at most {MAX_DIMS} sizes")
    if not all(type(v) is int and v >= 0 for v in value):
        raise Refused("array shape must hold non-negative integers")
    return value


def new_array(raw: Any, dt: np.dtype[Any], shape: tuple[int, ...], order: str) -> np.ndarray:
    if not isinstance(raw, (bytes, bytearray)):
        raise Refused(f"array data must be bytes, got {type(raw).__name__}")
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes != len(raw):
        raise Refused(f"array of shape {shape} and dtype {dt} needs {nbytes} bytes, got {len(raw)}")
    flat = np.frombuffer(raw, dtype=dt, count=math.prod(shape) if dt.itemsize else 0)
    return flat.reshape(shape, order="F" if order == "F" else "C").copy(order="K")


def global_named(m: Machine, module: Any, name: Any) -> Global:
    if not isinstance(module, str) or not isinstance(name, str):
        raise Refused("a global must be named by two strings")
    found = GLOBALS.get((module, name))
    if found is None:
        shown = "builtins" if module == "__builtin__" else module
        raise Refused(f"global {shown[:80]}.{name[:80]} is not allowed")
    return found


def op_global(m: Machine, pos: int) -> int:
    module, pos = m.line(pos)
    name, pos = m.line(pos)
    m.stack.append(global_named(m, module.decode("utf-8"), name.decode("utf-8")))
    return pos


def op_stack_global(m: Machine, pos: int) -> int:
    if len(m.stack) < 2:
        raise ValueError("stack underflow")
    name, module = m.stack.pop(), m.stack.pop()
    m.stack.append(global_named(m, module, name))
    return pos


def call(m: Machine, fn: Global, args: tuple[Any, ...]) -> Any:
    role = fn.role
    if role == "reconstruct":  # _reconstruct(ndarray, (0,), b'b'): an array to BUILD
        if len(args) != 3 or type(args[0]) is not Global or args[0].role != "ndarray":
            raise Refused("numpy _reconstruct: only plain numpy.ndarray is allowed")
        return Pending("array")
    if role == "dtype":  # dtype('u1', False, True): a dtype to BUILD
        if not 1 <= len(args) <= 3 or not all(
            a in (0, 1) and type(a) in (bool, int) for a in args[1:]
        ):
            raise Refused("numpy.dtype: expected (type string[, align[, copy]])")
        return Pending("dtype", plain_dtype(args[0]))
    if role == "scalar":
        if len(args) != 2 or not isinstance(args[0], np.dtype):
            raise Refused("numpy scalar: expected (dtype, bytes)")
        dt, raw = args
        return new_array(raw.encode("latin-1") if isinstance(raw, str) else raw, dt, (), "C")[()]
    if role == "frombuffer":  # protocol 5: _frombuffer(buffer, dtype, shape, order)
        if len(args) != 4 or not isinstance(args[1], np.dtype) or args[3] not in ("C", "F"):
            raise Refused("numpy _frombuffer: expected (bytes, dtype, shape, order)")
        m.charge(len(args[0]) if isinstance(args[0], (bytes, bytearray)) else 0)
        return new_array(args[0], args[1], checked_shape(args[2]), args[3])
    if role == "encode":  # how Python 3 writes bytes in protocols < 3
        if (
            len(args) != 2
            or not isinstance(args[0], str)
            or not isinstance(args[1], str)
            or args[1].lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1")
        ):
            raise Refused("_codecs.encode: only str -> latin1 is allowed")
        m.charge(len(args[0]))
        return args[0].encode("latin-1")
    if role in ("set", "frozenset"):
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
            raise Refused(f"{role}: expected one list of members")
        members = list(args[0]) if args else []
        m.keys(members)
        return set(members) if role == "set" else frozenset(members)
    raise Refused(f"{fn.name} cannot be called")


def op_reduce(m: Machine, pos: int) -> int:
    if len(m.stack) < 2:
        raise ValueError("stack underflow")
    args, fn = m.stack.pop(), m.stack.pop()
    if type(fn) is not Global:
        raise Refused(f"calling a {type(fn).__name__} is not allowed")
    if type(args) is tuple:
        m.plain(args)
    elif type(args) is not Args:
        raise Refused(f"{fn.name}: arguments must be a tuple")
    m.stack.append(call(m, fn, args))
    return pos


def built(m: Machine, pending: Pending, state: Any) -> Any:
    if type(state) is not tuple:
        raise Refused(f"the state of a numpy {pending.role} must be a tuple")
    if pending.role == "dtype":
        dt = pending.spec
        if len(state) not in (8, 9) or any(v is not None for v in state[2:5] + state[8:]):
            raise Refused("only plain dtypes are allowed (no fields, sub-arrays or metadata)")
        order = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        size = state[5]
        if dt.itemsize == 0 and dt.kind in "SUV" and type(size) is int and size > 0:
            m.charge(size)  # the flexible size of a Python 2 pickle's dtype('S', ...)
            dt = plain_dtype(f"{dt.kind}{size // 4 if dt.kind == 'U' else size}")
        if order in ("<", ">") and dt.itemsize > 1:
            dt = dt.newbyteorder(order)
        return dt
    if len(state) == 5:
        state = state[1:]  # (version, shape, dtype, is_fortran, rawdata)
    if len(state) != 4 or not isinstance(state[1], np.dtype) or state[2] not in (0, 1):
        raise Refused("an array state must be (shape, dtype, is_fortran, data)")
    shape, dt, fortran, raw = state
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    m.charge(len(raw) if isinstance(raw, (bytes, bytearray)) else 0)
    return new_array(raw, dt, checked_shape(shape), "F" if fortran else "C")


def op_build(m: Machine, pos: int) -> int:
    if len(m.stack) < 2:
        raise ValueError("stack underflow")
    state = m.stack.pop()
    target = m.stack[-1]
    if type(target) is not Pending:
        name = target.name if type(target) is Global else type(target).__name__
        raise Refused(f"refusing to set the state of {name}")
    m.plain([state] if type(state) is not tuple else state)
    value = built(m, target, state)
    m.stack[-1] = value
    for key in target.memo_keys:
        m.memo[key] = value
    return pos


HANDLERS: dict[bytes, Handler] = {
    b"c": op_global,
    b"\x93": op_stack_global,
    b"R": op_reduce,
    b"b": op_build,
}
