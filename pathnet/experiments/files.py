"""Reading sweep files: TOML, YAML (with PyYAML) or JSON, duplicate keys refused.

TOML refuses a key given twice itself; the JSON and YAML readers here do the same
(their libraries keep the last value silently), naming the key. What the document
means is checked by :class:`pathnet.experiments.config.SweepConfig`.

>>> import json, tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     p = pathlib.Path(d) / "s.json"
...     _ = p.write_text('{"grid": {"density": [0.1], "density": [0.2]}}')
...     read_document(p)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: pathnet.experiments: cannot parse .../s.json: duplicate key 'density'
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MAX_BYTES", "read_document"]

_PREFIX = "pathnet.experiments"

#: The largest sweep file read (a sweep file is a few hundred bytes).
MAX_BYTES = 1 << 20


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _parse_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_json_pairs)


def _parse_toml(text: str) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef, unused-ignore]
        except ImportError:
            raise ValueError(
                "reading TOML needs Python 3.11+ or tomli (pip install tomli)"
            ) from None
    return tomllib.loads(text)


def _parse_yaml(text: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: SafeLoader itself says so below
            if duplicate:
                raise ValueError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass: plain data only


def _parser(p: Path) -> Callable[[str], Any]:
    suffix = p.suffix.lower()
    if suffix == ".toml":
        return _parse_toml
    if suffix in (".yaml", ".yml"):
        try:
            import yaml  # noqa: F401
        except ImportError:
            raise ValueError(
                f"{_PREFIX}: {p} is YAML but PyYAML is not installed "
                f"(pip install pyyaml, or write the sweep as TOML)"
            ) from None
        return _parse_yaml
    if suffix == ".json":
        return _parse_json
    raise ValueError(
        f"{_PREFIX}: {p}: unknown sweep file type {suffix!r}; use .toml, .yaml or .json"
    )


def read_document(path: str | os.PathLike[str]) -> tuple[Any, Path]:
    """The parsed content of a sweep file (an empty file: ``{}``) and its path.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Unknown suffix, larger than :data:`MAX_BYTES`, not UTF-8, not parsable, or a
        key given twice; the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{_PREFIX}: no sweep file {str(p)!r}")
    parse = _parser(p)
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{_PREFIX}: {p} holds {size:,} bytes; a sweep file is at most 1 MB")
    try:
        doc = parse(p.read_bytes().decode("utf-8"))
    except Exception as exc:  # JSON/TOML/YAML errors, UnicodeError, RecursionError, duplicates
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{_PREFIX}: cannot parse {p}: {text}") from None
    return ({} if doc is None else doc), p
