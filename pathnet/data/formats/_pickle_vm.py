"""The pickle machine behind :func:`~pathnet.data.formats.unpickle.load_pickle`.

It interprets pickle opcodes itself, builds only plain Python data, charges every step
against a memory budget and refuses anything else; the numpy reconstructors live in
:mod:`~pathnet.data.formats._pickle_numpy`. See :mod:`~pathnet.data.formats.unpickle` for
the guarantees.
"""

from __future__ import annotations

import codecs
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

OP_COST = 64  # bytes charged per opcode: a small object, a stack slot, slack for growth
NUMERIC_KEYS = 1024  # numbers used as dict keys or set members, in all
ATOMS = (str, bytes, int, float, bool, type(None))
MAX_DIMS = 32
DTYPE_KINDS = frozenset("biufcSUV")


class Refused(Exception):
    """The pickle asks for something a data pickle never needs."""


class Global:
    """An allowed global, by role ("reconstruct", "dtype", ...)."""

    __slots__ = ("name", "role")

    def __init__(self, role: str, name: str) -> None:
        self.role, self.name = role, name


class Args(tuple):  # type: ignore[type-arg]
    """A tuple holding a global: only ever the arguments of a call."""


class Pending:
    """An array or dtype whose state (BUILD) has not been read yet."""

    __slots__ = ("memo_keys", "role", "spec")

    def __init__(self, role: str, spec: Any = None) -> None:
        self.role, self.spec = role, spec
        self.memo_keys: list[Any] = []


INTERNAL = (Args, Global, Pending)


class Machine:
    """The pickle virtual machine, restricted to plain data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.limit = 3 * len(data) + (16 << 20)
        self.charged = 0
        self.numeric_keys = 0

    # --- helpers -------------------------------------------------------------------
    def charge(self, nbytes: int) -> None:
        self.charged += nbytes
        if self.charged > self.limit:
            raise Refused(
                f"it would take more than {self.limit >> 20} MiB of memory to load "
                f"({len(self.data)} bytes on disk)"
            )

    def take(self, pos: int, n: int) -> bytes:
        if n < 0 or pos + n > len(self.data):
            raise ValueError(f"pickle data was truncated (an argument of {n} bytes)")
        return self.data[pos : pos + n]

    def line(self, pos: int) -> tuple[bytes, int]:
        end = self.data.find(b"\n", pos)
        if end < 0:
            raise ValueError("pickle data was truncated (a line without its end)")
        self.charge(end - pos)
        return self.data[pos:end], end + 1

    def sized(self, pos: int, fmt: str) -> tuple[bytes, int]:
        width = struct.calcsize(fmt)
        (n,) = struct.unpack(fmt, self.take(pos, width))
        self.charge(n + 64)
        return self.take(pos + width, n), pos + width + n

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise ValueError("a MARK is missing")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def plain(self, items: list[Any] | tuple[Any, ...]) -> None:
        for item in items:
            if type(item) in INTERNAL:
                raise Refused("an array, dtype or global is used before it was completed")

    def keys(self, keys: list[Any]) -> None:
        self.charge(OP_COST * len(keys))  # a hash-table entry each
        for key in keys:
            if type(key) not in ATOMS:
                raise Refused(
                    f"dict keys and set members must be strings, bytes or numbers, got "
                    f"{type(key).__name__}"
                )
            if type(key) in (int, float):
                self.numeric_keys += 1
        if self.numeric_keys > NUMERIC_KEYS:
            raise Refused(f"more than {NUMERIC_KEYS} numeric dict keys or set members")

    # --- the loop ------------------------------------------------------------------
    def run(self, dispatch: Sequence[Handler | None]) -> Any:
        data = self.data
        pos = steps = 0
        n = len(data)
        while pos < n:
            op = data[pos]
            handler = dispatch[op]
            if handler is None:
                raise ValueError(f"invalid pickle opcode 0x{op:02x} at byte {pos}")
            steps += 1
            if not steps & 1023:  # charge OP_COST a step, 1,024 steps at a time
                self.charge(1024 * OP_COST)
            pos = handler(self, pos + 1)
            if pos < 0:  # STOP
                if not self.stack:
                    raise ValueError("STOP with an empty stack")
                result = self.stack.pop()
                if type(result) is Pending and result.role == "dtype":
                    return result.spec  # a bare dtype: native byte order
                self.plain([result])
                return result
        raise ValueError("pickle data was truncated (no STOP opcode)")


# --- opcode handlers: each takes the position after the opcode, returns the next one ---
Handler = Callable[[Machine, int], int]


def _const(value: Any) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        m.stack.append(value)
        return pos

    return handler


def _empty(kind: type) -> Handler:
    size = sys.getsizeof(kind())  # an empty set takes 216 bytes: more than OP_COST

    def handler(m: Machine, pos: int) -> int:
        m.charge(size)
        m.stack.append(kind())
        return pos

    return handler


def _fixed(fmt: str) -> Handler:
    unpack, width = struct.Struct(fmt).unpack_from, struct.calcsize(fmt)

    def handler(m: Machine, pos: int) -> int:
        m.stack.append(unpack(m.data, pos)[0])
        return pos + width

    return handler


def _op_binint1(m: Machine, pos: int) -> int:
    m.stack.append(m.data[pos])
    return pos + 1


def _index(m: Machine, pos: int, fmt: str | None) -> tuple[int, int]:
    """A memo index: a text line (protocol 0) or a little-endian unsigned integer."""
    if fmt is None:
        text, pos = m.line(pos)
        return int(text), pos
    if fmt == "<B":
        return m.data[pos], pos + 1
    return struct.unpack_from(fmt, m.data, pos)[0], pos + struct.calcsize(fmt)


def _op_int(m: Machine, pos: int) -> int:
    text, pos = m.line(pos)
    m.stack.append(False if text == b"00" else True if text == b"01" else int(text))
    return pos


def _op_long(m: Machine, pos: int) -> int:
    text, pos = m.line(pos)
    m.stack.append(int(text[:-1] if text.endswith(b"L") else text))
    return pos


def _op_float(m: Machine, pos: int) -> int:
    text, pos = m.line(pos)
    m.stack.append(float(text))
    return pos


def _long_bytes(fmt: str) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        raw, pos = m.sized(pos, fmt)
        m.stack.append(int.from_bytes(raw, "little", signed=True))
        return pos

    return handler


def _bytes_op(fmt: str, make: Callable[[bytes], Any]) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        raw, pos = m.sized(pos, fmt)
        if make is bytes:
            m.stack.append(raw)
        else:  # a str may take up to 4 bytes a character (at most 4x the UTF-8 size)
            value = make(raw)
            m.charge(sys.getsizeof(value) - len(raw))
            m.stack.append(value)
        return pos

    return handler


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _op_string(m: Machine, pos: int) -> int:  # protocol 0: a quoted Python 2 str
    text, pos = m.line(pos)
    text = text.rstrip(b"\r")
    if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
        raise ValueError("the STRING opcode argument must be quoted")
    m.stack.append(codecs.escape_decode(text[1:-1])[0])
    return pos


def _op_unicode(m: Machine, pos: int) -> int:  # protocol 0
    text, pos = m.line(pos)
    value = text.decode("raw-unicode-escape")
    m.charge(sys.getsizeof(value))
    m.stack.append(value)
    return pos


def _op_mark(m: Machine, pos: int) -> int:
    m.marks.append(len(m.stack))
    return pos


def _op_pop(m: Machine, pos: int) -> int:
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()
    return pos


def _op_pop_mark(m: Machine, pos: int) -> int:
    m.pop_mark()
    return pos


def _op_dup(m: Machine, pos: int) -> int:
    m.stack.append(m.stack[-1])
    return pos


def _get(fmt: str | None) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        key, pos = _index(m, pos, fmt)
        if key not in m.memo:
            raise ValueError(f"memo key {key} missing")
        m.stack.append(m.memo[key])
        return pos

    return handler


def _remember(m: Machine, key: int) -> None:
    value = m.stack[-1]
    if type(value) is Pending:
        value.memo_keys.append(key)
    m.memo[key] = value


def _put(fmt: str | None) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        key, pos = _index(m, pos, fmt)
        m.charge(OP_COST)  # a memo entry
        _remember(m, key)
        return pos

    return handler


def _op_memoize(m: Machine, pos: int) -> int:
    _remember(m, len(m.memo))
    return pos


def _op_list(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    m.plain(items)
    m.stack.append(items)
    return pos


def _tuple(size: int | None) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        if size is None:
            items = m.pop_mark()
        else:
            if len(m.stack) < size or (m.marks and len(m.stack) - size < m.marks[-1]):
                raise ValueError("stack underflow")
            items = m.stack[len(m.stack) - size :]
            del m.stack[len(m.stack) - size :]
        if any(type(item) is Global for item in items):
            m.plain([item for item in items if type(item) is not Global])
            m.stack.append(Args(items))  # arguments of a call, e.g. (ndarray, (0,), b"b")
        else:
            m.plain(items)
            m.stack.append(tuple(items))
        return pos

    return handler


def _top(m: Machine, kind: type) -> Any:
    if not m.stack or type(m.stack[-1]) is not kind:
        got = type(m.stack[-1]).__name__ if m.stack else "nothing"
        raise Refused(f"expected a {kind.__name__} on the stack, found {got}")
    return m.stack[-1]


def _op_append(m: Machine, pos: int) -> int:
    value = m.stack.pop()
    m.plain([value])
    _top(m, list).append(value)
    return pos


def _op_appends(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    m.plain(items)
    _top(m, list).extend(items)
    return pos


def _set_items(m: Machine, target: dict[Any, Any], items: list[Any]) -> None:
    if len(items) % 2:
        raise ValueError("odd number of items for a dict")
    m.plain(items)
    m.keys(items[::2])
    for i in range(0, len(items), 2):
        target[items[i]] = items[i + 1]


def _op_dict(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    target: dict[Any, Any] = {}
    _set_items(m, target, items)
    m.stack.append(target)
    return pos


def _op_setitem(m: Machine, pos: int) -> int:
    if len(m.stack) < 3:
        raise ValueError("stack underflow")
    value, key = m.stack.pop(), m.stack.pop()
    _set_items(m, _top(m, dict), [key, value])
    return pos


def _op_setitems(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    _set_items(m, _top(m, dict), items)
    return pos


def _op_additems(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    m.keys(items)
    _top(m, set).update(items)
    return pos


def _op_frozenset(m: Machine, pos: int) -> int:
    items = m.pop_mark()
    m.keys(items)
    m.stack.append(frozenset(items))
    return pos


def _op_stop(m: Machine, pos: int) -> int:
    return -1


def _refuse(what: str) -> Handler:
    def handler(m: Machine, pos: int) -> int:
        raise Refused(f"{what} are not allowed")

    return handler


def _op_proto(m: Machine, pos: int) -> int:
    version = m.take(pos, 1)[0]
    if version > 5:
        raise ValueError(f"unsupported pickle protocol {version}")
    return pos + 1


def _op_frame(m: Machine, pos: int) -> int:
    m.take(pos, 8)
    return pos + 8


def dispatch_table(extra: dict[bytes, Handler]) -> list[Handler | None]:
    """The handler of every opcode byte (None: not an opcode); ``extra`` adds the globals' ones."""
    table: dict[bytes, Handler] = {
        b"(": _op_mark,
        b".": _op_stop,
        b"0": _op_pop,
        b"1": _op_pop_mark,
        b"2": _op_dup,
        b"F": _op_float,
        b"G": _fixed(">d"),
        b"I": _op_int,
        b"J": _fixed("<i"),
        b"K": _op_binint1,
        b"M": _fixed("<H"),
        b"L": _op_long,
        b"\x8a": _long_bytes("<B"),
        b"\x8b": _long_bytes("<i"),
        b"N": _const(None),
        b"\x88": _const(True),
        b"\x89": _const(False),
        b"S": _op_string,
        b"T": _bytes_op("<i", bytes),
        b"U": _bytes_op("<B", bytes),
        b"B": _bytes_op("<I", bytes),
        b"C": _bytes_op("<B", bytes),
        b"\x8e": _bytes_op("<Q", bytes),
        b"\x96": _bytes_op("<Q", bytearray),
        b"V": _op_unicode,
        b"X": _bytes_op("<I", _utf8),
        b"\x8c": _bytes_op("<B", _utf8),
        b"\x8d": _bytes_op("<Q", _utf8),
        b"]": _empty(list),
        b")": _const(()),
        b"}": _empty(dict),
        b"\x8f": _empty(set),
        b"a": _op_append,
        b"e": _op_appends,
        b"l": _op_list,
        b"t": _tuple(None),
        b"\x85": _tuple(1),
        b"\x86": _tuple(2),
        b"\x87": _tuple(3),
        b"d": _op_dict,
        b"s": _op_setitem,
        b"u": _op_setitems,
        b"\x90": _op_additems,
        b"\x91": _op_frozenset,
        b"g": _get(None),
        b"h": _get("<B"),
        b"j": _get("<I"),
        b"p": _put(None),
        b"q": _put("<B"),
        b"r": _put("<I"),
        b"\x94": _op_memoize,
        b"\x80": _op_proto,
        b"\x95": _op_frame,
        b"P": _refuse("persistent ids"),
        b"Q": _refuse("persistent ids"),
        b"i": _refuse("class instances (INST)"),
        b"o": _refuse("class instances (OBJ)"),
        b"\x81": _refuse("class instances (NEWOBJ)"),
        b"\x92": _refuse("class instances (NEWOBJ_EX)"),
        b"\x82": _refuse("extension codes"),
        b"\x83": _refuse("extension codes"),
        b"\x84": _refuse("extension codes"),
        b"\x97": _refuse("out-of-band buffers"),
        b"\x98": _refuse("out-of-band buffers"),
    }
    out: list[Handler | None] = [None] * 256
    for code, handler in {**table, **extra}.items():
        out[code[0]] = handler
    return out
