"""Sweep configuration: a grid of trials read from TOML (or YAML), each named by its hash.

A sweep file has a ``[grid]`` table whose lists are the axes of a cartesian product and a
``[fixed]`` table of single values shared by every trial; any trial setting may stand in
either (a setting in neither takes its default below). For example::

    out = "runs/sweep_fmnist"          # where `pathnet sweep` writes (--out overrides)

    [grid]
    method = ["phew", "synflow_l2"]
    density = [0.1, 0.02]
    seed = [0, 1]                      # training seed (data order, dropout)

    [fixed]
    model = "mlp"
    dataset = "fashion-mnist"
    epochs = 20
    train_subset = 2000                # a balanced subset of the training split

    [method_options.synflow_l2]        # options of one method, passed to pathnet.select
    iterations = 100

Seeds
-----
``seed``
    The **training** seed: data order, augmentation and dropout (``fit(seed=...)``).
``init_seed`` (default 0)
    The model's initial weights (``pathnet.models.build(model, seed=init_seed)``).
``mask_seed`` (default 0)
    The selection method's own randomness (``pathnet.select(..., seed=mask_seed)``).

The mask is a function of ``model``, ``model_options``, ``init_seed``, ``method``,
``density``, ``mask_seed`` and the method's options (plus ``dataset`` for data-dependent
methods such as SNIP and GraSP), never of ``seed``: trials that differ only in their
training seed share one mask, built once (:meth:`Trial.mask_key`). Sweeping ``seed`` with a
fixed ``init_seed`` and ``mask_seed`` therefore measures training noise on one subnetwork;
sweep ``init_seed`` or ``mask_seed`` as well to include the variation between masks.

Identity
--------
Every setting is resolved (defaults filled in, types normalised, dataset aliases made
canonical) before the trial's canonical JSON (sorted keys, no spaces) is hashed with
SHA-256; the first 12 hex digits name its folder, ``trials/<method>-d<density>-s<seed>-<hash>``.
A trial is a pure function of that configuration; where the sweep runs (``data_root``,
device, executor) is not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathnet.mask import MaskMode

__all__ = [
    "DATA_METHODS",
    "DENSE",
    "TRIAL_KEYS",
    "SweepConfig",
    "Trial",
    "canonical_json",
    "config_hash",
    "load_config",
]

_PREFIX = "pathnet.experiments"

#: The method name of an unpruned baseline: no mask, density 1.
DENSE = "dense"

#: Methods whose mask depends on training data (its dataset enters their mask key).
DATA_METHODS = frozenset({"snip", "grasp"})

_HASH_CHARS = 12


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal configurations give equal text.

    >>> canonical_json({"b": 1, "a": [0.1, None]})
    '{"a":[0.1,null],"b":1}'
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def config_hash(obj: Any) -> str:
    """First 12 hex digits of the SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:_HASH_CHARS]


# ---------------------------------------------------------------------------- settings
def _method_key(name: Any) -> str:
    """A method name as the registry spells it (``"SynFlow-L2"`` -> ``"synflow_l2"``)."""
    return str(name).lower().replace("-", "_")


def _int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{_PREFIX}: {name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _float(name: str, v: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{_PREFIX}: {name} must be a finite number, got {v!r}")
    if (positive and v <= 0) or (nonneg and v < 0):
        kind = "positive" if positive else ">= 0"
        raise ValueError(f"{_PREFIX}: {name} must be {kind}, got {v!r}")
    return float(v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{_PREFIX}: {name} must be true or false, got {v!r}")
    return v


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{_PREFIX}: {name} must be a non-empty string, got {v!r}")
    return v


def _options(name: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"{_PREFIX}: {name} must be a table of key = value, got {v!r}")
    out = {}
    for k, x in v.items():
        if not isinstance(x, (str, int, float, bool)) and not (
            isinstance(x, list) and all(isinstance(e, (str, int, float, bool)) for e in x)
        ):
            raise ValueError(
                f"{_PREFIX}: {name}.{k} must be a string, number, boolean or a list of them, "
                f"got {x!r}"
            )
        out[str(k)] = x
    return out


@dataclass(frozen=True)
class Trial:
    """One resolved trial: what to build, how to select, how to train.

    Build with :meth:`from_settings`, which checks every value and fills in defaults.
    ``milestones=None`` means fit's default (50% and 75% of the epochs); ``augment=None``
    the data set's default; ``train_subset``/``test_subset`` (None: the whole split) keep
    ``n // classes`` samples of every class, drawn with seed 0 (the same for every trial).
    """

    method: str
    density: float
    model: str = "mlp"
    dataset: str = "fashion-mnist"
    seed: int = 0
    mask_seed: int = 0
    init_seed: int = 0
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.1
    mask_mode: MaskMode = "hard"
    augment: bool | None = None
    amp: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    model_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Trial:
        """Check and normalise ``settings`` (keys of :data:`TRIAL_KEYS`) into a Trial."""
        unknown = sorted(set(settings) - set(TRIAL_KEYS))
        if unknown:
            raise ValueError(
                f"{_PREFIX}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(TRIAL_KEYS)}"
            )
        for key in ("method", "density"):
            if key not in settings:
                raise ValueError(f"{_PREFIX}: the sweep sets no {key!r} (in [grid] or [fixed])")
        s = dict(settings)
        out: dict[str, Any] = {}
        method = _method_key(_str("method", s["method"]))
        out["method"] = method
        out["model"] = _str("model", s.get("model", "mlp")).lower()
        out["dataset"] = _canonical_dataset(_str("dataset", s.get("dataset", "fashion-mnist")))
        density = _float("density", s["density"])
        if not 0 < density <= 1:
            raise ValueError(f"{_PREFIX}: density must be in (0, 1], got {s['density']!r}")
        out["density"] = density
        for key in ("seed", "mask_seed", "init_seed"):
            out[key] = _int(key, s.get(key, 0), 0)
        out["epochs"] = _int("epochs", s.get("epochs", 160), 1)
        out["batch_size"] = _int("batch_size", s.get("batch_size", 128), 1)
        out["lr"] = _float("lr", s.get("lr", 0.1), positive=True)
        out["momentum"] = _float("momentum", s.get("momentum", 0.9), nonneg=True)
        out["nesterov"] = _bool("nesterov", s.get("nesterov", True))
        out["weight_decay"] = _float("weight_decay", s.get("weight_decay", 1e-4), nonneg=True)
        ms = s.get("milestones")
        if ms is not None:
            if not isinstance(ms, (list, tuple)):
                raise ValueError(f"{_PREFIX}: milestones must be a list of epochs, got {ms!r}")
            ms = tuple(sorted(_int("milestones", m, 0) for m in ms))
        out["milestones"] = ms
        out["gamma"] = _float("gamma", s.get("gamma", 0.1), positive=True)
        mode = s.get("mask_mode", "hard")
        if mode not in ("hard", "parametrize", "prune"):
            raise ValueError(
                f"{_PREFIX}: mask_mode must be 'hard', 'parametrize' or 'prune', got {mode!r}"
            )
        out["mask_mode"] = mode
        aug = s.get("augment")
        out["augment"] = None if aug is None else _bool("augment", aug)
        out["amp"] = _bool("amp", s.get("amp", False))
        for key in ("train_subset", "test_subset"):
            v = s.get(key)
            out[key] = None if v is None else _int(key, v, 1)
        out["method_options"] = _options("method_options", s.get("method_options", {}))
        out["model_options"] = _options("model_options", s.get("model_options", {}))
        if method == DENSE:  # one dense baseline whatever density/mask settings it is crossed with
            out.update(density=1.0, mask_seed=0, method_options={})
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready plain data (what is hashed)."""
        d = dataclasses.asdict(self)
        d["milestones"] = None if self.milestones is None else list(self.milestones)
        d["method_options"] = dict(self.method_options)
        d["model_options"] = dict(self.model_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict` (values are checked again)."""
        return cls.from_settings(d)

    @property
    def hash(self) -> str:
        """12 hex digits identifying the configuration."""
        return config_hash(self.to_dict())

    @property
    def name(self) -> str:
        """Folder name ``<method>-d<density>-s<seed>-<hash>``."""
        return f"{self.method}-d{self.density:g}-s{self.seed}-{self.hash}"

    def mask_key(self) -> dict[str, Any] | None:
        """What the mask depends on (None for the dense baseline); see the module notes."""
        if self.method == DENSE:
            return None
        key = {
            "model": self.model,
            "model_options": dict(self.model_options),
            "init_seed": self.init_seed,
            "method": self.method,
            "density": self.density,
            "mask_seed": self.mask_seed,
            "method_options": dict(self.method_options),
        }
        if self.method in DATA_METHODS:
            key["dataset"] = self.dataset
        return key

    @property
    def mask_hash(self) -> str | None:
        """12 hex digits of :meth:`mask_key`: the mask file is ``masks/<mask_hash>.npz``."""
        key = self.mask_key()
        return None if key is None else config_hash(key)


#: Settings a trial takes, in the order of the result table's columns.
TRIAL_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Trial))
_GRIDDABLE = tuple(k for k in TRIAL_KEYS if k not in ("method_options", "model_options"))


def _canonical_dataset(name: str) -> str:
    from pathnet.data import _canonical

    return _canonical(name)


# ------------------------------------------------------------------------------ sweeps
_TOP_KEYS = ("name", "out", "data_root", "grid", "fixed", "method_options", "model_options")


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep file: the grid axes, the fixed settings and per-method options.

    Attributes
    ----------
    grid : dict of str to list
        Axes; the trials are their cartesian product.
    fixed : dict
        Settings shared by every trial.
    method_options : dict of str to dict
        Options of each method (``[method_options.<method>]``), given to its trials only.
    model_options : dict
        Keyword arguments of ``pathnet.models.build`` (e.g. ``num_classes = 100``).
    name : str or None
        Used in figure titles; default the file's stem.
    out : str or None
        Default output folder, relative to the current directory.
    data_root : str or None
        Folder holding the data sets (not part of any trial's identity).
    source : pathlib.Path or None
        The file it was read from.
    """

    grid: Mapping[str, Sequence[Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_options: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    out: str | None = None
    data_root: str | None = None
    source: Path | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: Path | None = None) -> SweepConfig:
        """Check a parsed sweep document (the tables of the file) and build the config."""
        where = f" in {source}" if source else ""
        if not isinstance(doc, Mapping):
            raise ValueError(f"{_PREFIX}: a sweep file must hold a table of settings{where}")
        unknown = sorted(set(doc) - set(_TOP_KEYS))
        if unknown:
            hint = ""
            if set(unknown) & set(TRIAL_KEYS):
                hint = " (trial settings go in [grid] as lists or in [fixed] as single values)"
            raise ValueError(
                f"{_PREFIX}: unknown top-level key(s) {', '.join(unknown)}{where}{hint}; "
                f"known: {', '.join(_TOP_KEYS)}"
            )
        grid = doc.get("grid", {})
        fixed = doc.get("fixed", {})
        for table, value in (("grid", grid), ("fixed", fixed)):
            if not isinstance(value, Mapping):
                raise ValueError(f"{_PREFIX}: [{table}] must be a table{where}")
            bad = sorted(set(value) - set(_GRIDDABLE))
            if bad:
                raise ValueError(
                    f"{_PREFIX}: unknown setting(s) {', '.join(bad)} in [{table}]{where}; "
                    f"known: {', '.join(_GRIDDABLE)}"
                )
        both = sorted(set(grid) & set(fixed))
        if both:
            raise ValueError(f"{_PREFIX}: {', '.join(both)} set in both [grid] and [fixed]{where}")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"{_PREFIX}: [grid] {key} must be a non-empty list, got {values!r}{where}"
                )
        mo = doc.get("method_options", {})
        if not isinstance(mo, Mapping) or not all(isinstance(v, Mapping) for v in mo.values()):
            raise ValueError(
                f"{_PREFIX}: method_options must hold one table per method, "
                f"e.g. [method_options.synflow_l2]{where}"
            )
        method_options = {_method_key(k): _options(f"method_options.{k}", v) for k, v in mo.items()}
        for key in ("name", "out", "data_root"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise ValueError(f"{_PREFIX}: {key} must be a string{where}")
        config = cls(
            grid={k: list(v) for k, v in grid.items()},
            fixed=dict(fixed),
            method_options=method_options,
            model_options=_options("model_options", doc.get("model_options", {})),
            name=doc.get("name") or (source.stem if source else None),
            out=doc.get("out"),
            data_root=doc.get("data_root"),
            source=source,
        )
        config._check_names(config.trials())  # trials() checks every setting
        return config

    def trials(self) -> list[Trial]:
        """Every trial of the grid, once each, ordered seed-major.

        All trials of the first training seed come first (in grid order), then those of
        the next: the trials running at the same time then need different masks, and
        the later seeds find their masks built.
        """
        keys = list(self.grid)
        seen: dict[str, Trial] = {}
        for values in itertools.product(*(self.grid[k] for k in keys)):
            settings = {**self.fixed, **dict(zip(keys, values))}
            method = _method_key(settings.get("method", ""))
            settings["method_options"] = self.method_options.get(method, {})
            settings["model_options"] = self.model_options
            trial = Trial.from_settings(settings)
            seen.setdefault(trial.hash, trial)
        return sorted(seen.values(), key=lambda t: t.seed)  # stable: grid order within a seed

    def _check_names(self, trials: Sequence[Trial]) -> None:
        from pathnet import models
        from pathnet.select.registry import METHODS, _load_builtin_methods

        _load_builtin_methods()
        for t in trials:
            if t.model not in models.MODELS:
                raise ValueError(
                    f"{_PREFIX}: unknown model {t.model!r}; expected one of {sorted(models.MODELS)}"
                )
            if t.method != DENSE and t.method not in METHODS:
                raise ValueError(
                    f"{_PREFIX}: unknown method {t.method!r}; expected one of "
                    f"{sorted([*METHODS, DENSE])}"
                )
        extra = sorted(set(self.method_options) - {t.method for t in trials})
        if extra:
            raise ValueError(
                f"{_PREFIX}: [method_options.{extra[0]}] names a method the grid does not run"
            )

    def to_dict(self) -> dict[str, Any]:
        """The document, as it would be written back (without ``source``)."""
        return {
            "name": self.name,
            "out": self.out,
            "data_root": self.data_root,
            "grid": {k: list(v) for k, v in self.grid.items()},
            "fixed": dict(self.fixed),
            "method_options": {k: dict(v) for k, v in self.method_options.items()},
            "model_options": dict(self.model_options),
        }


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read a sweep file: ``.toml``, or ``.yaml``/``.yml`` (with PyYAML), or ``.json``.

    Raises
    ------
    ValueError
        Unreadable file, unknown keys, bad values, unknown models or methods.
    FileNotFoundError
        No such file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{_PREFIX}: no sweep file {str(p)!r}")
    suffix = p.suffix.lower()
    parse: Any
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef, unused-ignore]
            except ImportError:
                raise ValueError(
                    f"{_PREFIX}: reading {p} needs Python 3.11+ or tomli (pip install tomli)"
                ) from None
        parse = tomllib.loads
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"{_PREFIX}: {p} is YAML but PyYAML is not installed "
                f"(pip install pyyaml, or write the sweep as TOML)"
            ) from None
        parse = yaml.safe_load
    elif suffix == ".json":
        parse = json.loads
    else:
        raise ValueError(
            f"{_PREFIX}: {p}: unknown sweep file type {suffix!r}; use .toml, .yaml or .json"
        )
    try:
        doc = parse(p.read_text(encoding="utf-8"))
    except Exception as exc:  # TOMLDecodeError, JSONDecodeError, yaml.YAMLError, UnicodeError
        raise ValueError(f"{_PREFIX}: cannot parse {p}: {exc}") from exc
    return SweepConfig.from_dict(doc or {}, source=p.resolve())
