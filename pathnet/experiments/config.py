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

Training settings
-----------------
``epochs``, ``batch_size``, ``lr``, ... are the fields of
:class:`pathnet.train.config.TrainConfig` (declared there once, validated there); a trial
holds them as its ``train`` config.

Validation
----------
Everything is checked when the file is loaded, before any trial runs: keys must be
strings and appear once (JSON and YAML duplicates are refused by name; TOML refuses
them itself), numbers finite, methods and models registered, method and model options
known to the method or model builder, and subsets large enough to keep one sample of
each class.

Identity
--------
Every setting is resolved (defaults filled in, types normalised, dataset aliases made
canonical) before the trial's canonical JSON (sorted keys, no spaces) is hashed with
SHA-256; the first 12 hex digits name its folder, ``trials/<method>-d<density>-s<seed>-<hash>``.
A trial is a pure function of that configuration; where the sweep runs (``data_root``,
device, executor) is not part of it. Training settings added to ``TrainConfig`` after
the first sweep format (today ``eval_batch_size``) enter the hash only when set away
from their default, so existing sweep folders keep their trial names.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pathnet.experiments.lookups import dataset_facts, known_options, method_function, model_outputs
from pathnet.train.config import TrainConfig

__all__ = [
    "DATA_METHODS",
    "DENSE",
    "MAX_TRIALS",
    "SANITY_CHECKS",
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

#: The most trials one sweep file may describe (a guard against runaway grids).
MAX_TRIALS = 10_000

_HASH_CHARS = 12

# Training settings a trial's identity always holds (the first sweep format's); later
# TrainConfig fields enter it only when set away from their default.
_V1_TRAIN = frozenset(
    ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "milestones",
     "gamma", "mask_mode", "augment", "amp")
)  # fmt: skip
_TRAIN_DEFAULTS = TrainConfig().to_dict()

#: Sanity checks a trial may apply to its method's mask or weights (:mod:`pathnet.sanity`).
SANITY_CHECKS = (
    "none", "shuffle", "shuffle_fan_in", "reinit_kaiming", "reinit_liu", "reinit_evci",
    "invert",
)  # fmt: skip

# Settings added after the first sweep format: they enter a trial's identity (its hash)
# only when set away from these defaults, so existing sweep folders keep their names.
_LATER_DEFAULTS: dict[str, Any] = {"pad": 0, "sanity": "none", "log_every": None, "dst": None}


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


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{_PREFIX}: {name} must be a finite number, got {v!r}")
    return float(v)


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{_PREFIX}: {name} must be a non-empty string, got {v!r}")
    return v


def _plain(name: str, x: Any) -> None:
    """``x`` a string, boolean, finite number or a list of them (an option's value)."""
    items = x if isinstance(x, list) else [x]
    if not isinstance(x, (str, int, float, bool, list)) or not all(
        isinstance(e, (str, int, float, bool)) for e in items
    ):
        raise ValueError(
            f"{_PREFIX}: {name} must be a string, number, boolean or a list of them, got {x!r}"
        )
    if any(isinstance(e, float) and not math.isfinite(e) for e in items):
        raise ValueError(f"{_PREFIX}: {name} must be finite, got {x!r}")


def _options(name: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"{_PREFIX}: {name} must be a table of key = value, got {v!r}")
    out = {}
    for k, x in v.items():
        _key(name, k)
        _plain(f"{name}.{k}", x)
        out[k] = x
    return out


def _key(table: str, k: Any) -> None:
    if not isinstance(k, str):
        raise ValueError(
            f"{_PREFIX}: keys must be strings; [{table}] has the {type(k).__name__} key {k!r}"
        )


def _train(settings: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of ``settings``' training fields; errors name the setting."""
    try:
        return TrainConfig.from_dict(
            {k: settings[k] for k in TrainConfig.field_names() if k in settings}
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{_PREFIX}: {str(exc).split(': ', 1)[-1]}") from None


@dataclass(frozen=True)
class Trial:
    """One resolved trial: what to build, how to select, how to train.

    Build with :meth:`from_settings`, which checks every value and fills in defaults.
    ``train`` holds the training hyper-parameters (:class:`pathnet.train.config.TrainConfig`;
    ``milestones=None`` means 50% and 75% of the epochs, ``augment=None`` the data set's
    default). ``train_subset``/``test_subset`` (None: the whole split) keep
    ``n // classes`` samples of every class, drawn with seed 0 (the same for every trial).
    ``pad`` pads every image by that many black pixels per side (28x28 Fashion-MNIST to
    32x32 for ResNet20 with ``pad = 2``). ``sanity`` applies a check of
    :mod:`pathnet.sanity` (one of :data:`SANITY_CHECKS`): ``shuffle`` /
    ``shuffle_fan_in`` shuffle the method's mask within each layer (seed ``mask_seed``;
    ``fan_in`` keeps every unit's fan-in), ``reinit_<scheme>`` re-draws the kept weights
    (seed ``init_seed``), ``invert`` keeps the inverted ranking. ``log_every`` logs the
    training loss and accuracy every that many optimizer steps (``fit(log_every=...)``).
    ``dst`` holds the options of dynamic sparse training (``pathnet.train.DST``) or None.
    """

    method: str
    density: float
    model: str = "mlp"
    dataset: str = "fashion-mnist"
    seed: int = 0
    mask_seed: int = 0
    init_seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    train_subset: int | None = None
    test_subset: int | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    model_options: Mapping[str, Any] = field(default_factory=dict)
    pad: int = 0
    sanity: str = "none"
    log_every: int | None = None
    dst: Mapping[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Trial:
        """Check and normalise ``settings`` (keys of :data:`TRIAL_KEYS`) into a Trial."""
        for k in settings:
            _key("trial settings", k)
        unknown = sorted(set(settings) - set(TRIAL_KEYS))
        if unknown:
            raise ValueError(
                f"{_PREFIX}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(TRIAL_KEYS)}"
            )
        for key in ("method", "density"):
            if key not in settings:
                raise ValueError(f"{_PREFIX}: the sweep sets no {key!r} (in [grid] or [fixed])")
        s = settings
        method = _method_key(_str("method", s["method"]))
        density = _float("density", s["density"])
        if not 0 < density <= 1:
            raise ValueError(f"{_PREFIX}: density must be in (0, 1], got {s['density']!r}")
        out: dict[str, Any] = {
            "method": method,
            "density": density,
            "model": _str("model", s.get("model", "mlp")).lower(),
            "dataset": dataset_facts(_str("dataset", s.get("dataset", "fashion-mnist")))[0],
            "train": _train(s),
        }
        for key in ("seed", "mask_seed", "init_seed"):
            out[key] = _int(key, s.get(key, 0), 0)
        for key in ("train_subset", "test_subset"):
            v = s.get(key)
            out[key] = None if v is None else _int(key, v, 1)
        out["method_options"] = _options("method_options", s.get("method_options", {}))
        out["model_options"] = _options("model_options", s.get("model_options", {}))
        out["pad"] = _int("pad", s.get("pad", 0), 0)
        v = s.get("log_every")
        out["log_every"] = None if v is None else _int("log_every", v, 1)
        out["sanity"] = _sanity(s.get("sanity", "none"), method)
        out["dst"] = _dst(s.get("dst"), method)
        if method == DENSE:  # one dense baseline whatever density/mask settings it is crossed with
            out.update(density=1.0, mask_seed=0, method_options={})
        return cls(**out)

    def settings(self) -> dict[str, Any]:
        """Every setting, flat (training fields beside the others), as JSON-ready data."""
        d: dict[str, Any] = {
            k: getattr(self, k) for k in ("method", "density", "model", "dataset", "seed")
        }
        d.update(mask_seed=self.mask_seed, init_seed=self.init_seed, **self.train.to_dict())
        d.update(train_subset=self.train_subset, test_subset=self.test_subset)
        d.update(method_options=dict(self.method_options), model_options=dict(self.model_options))
        d.update(pad=self.pad, sanity=self.sanity, log_every=self.log_every)
        d["dst"] = dict(self.dst) if self.dst is not None else None
        return d

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready plain data (what is hashed; see the module notes)."""
        later = {**_TRAIN_DEFAULTS, **_LATER_DEFAULTS}
        return {
            k: v
            for k, v in self.settings().items()
            if k not in later or k in _V1_TRAIN or v != later[k]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict` and :meth:`settings` (values are checked again)."""
        return cls.from_settings(d)

    @property
    def hash(self) -> str:
        """12 hex digits identifying the configuration."""
        return config_hash(self.to_dict())

    @property
    def name(self) -> str:
        """Folder name ``<method>-d<density>-s<seed>-<hash>`` (``<method>-<sanity>-...``
        for a sanity check)."""
        method = self.method if self.sanity == "none" else f"{self.method}-{self.sanity}"
        return f"{method}-d{self.density:g}-s{self.seed}-{self.hash}"

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
        if self.method in DATA_METHODS or self.sanity == "invert":
            key["dataset"] = self.dataset
        if self.sanity in ("shuffle", "shuffle_fan_in", "invert"):
            key["sanity"] = self.sanity
        return key

    def base(self) -> Trial:
        """The same trial without its sanity check (whose mask a shuffle starts from)."""
        return replace(self, sanity="none")

    @property
    def mask_hash(self) -> str | None:
        """12 hex digits of :meth:`mask_key`: the mask file is ``masks/<mask_hash>.npz``."""
        key = self.mask_key()
        return None if key is None else config_hash(key)


def _sanity(v: Any, method: str) -> str:
    name = _str("sanity", v).lower()
    if name not in SANITY_CHECKS:
        raise ValueError(f"{_PREFIX}: sanity must be one of {', '.join(SANITY_CHECKS)}, got {v!r}")
    if name != "none" and method == DENSE:
        raise ValueError(f"{_PREFIX}: sanity {name!r} needs a mask; the dense baseline has none")
    if name == "invert":
        from pathnet.sanity import inverted_method

        if inverted_method(method) is None:
            raise ValueError(
                f"{_PREFIX}: sanity 'invert': method {method!r} has no inverted ranking "
                f"(see pathnet.sanity.inverted_method)"
            )
    return name


def _dst(v: Any, method: str) -> dict[str, Any] | None:
    if v is None:
        return None
    if method == DENSE:
        raise ValueError(f"{_PREFIX}: dst needs a mask; the dense baseline has none")
    from pathnet.train.dst import DST

    try:
        full = DST.from_dict(_options("dst", v)).to_dict()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{_PREFIX}: dst: {str(exc).split(': ', 1)[-1]}") from None
    return {k: x for k, x in full.items() if x is not None}  # None: the DST default


#: Settings a trial takes, in the order of the result table's columns.
TRIAL_KEYS: tuple[str, ...] = (
    "method", "density", "model", "dataset", "seed", "mask_seed", "init_seed",
    *TrainConfig.field_names(), "train_subset", "test_subset", "method_options", "model_options",
    "pad", "sanity", "log_every", "dst",
)  # fmt: skip
_GRIDDABLE = tuple(k for k in TRIAL_KEYS if k not in ("method_options", "model_options", "dst"))


def _check_options(
    what: str, name: str, options: Mapping[str, Any], known: set[str] | None
) -> None:
    if known is None:
        return
    bad = sorted(set(options) - known)
    if bad:
        raise ValueError(
            f"{_PREFIX}: {what}_options: {name} takes no option {bad[0]!r}; "
            f"it takes {', '.join(sorted(known)) or 'none'}"
        )


def _check_trial(t: Trial, seen: set[tuple[str, ...]]) -> None:
    """Registry checks of one trial (each distinct model, method and data set once)."""
    from pathnet import models

    key = (t.model, t.method, t.dataset, str(t.train_subset), str(t.test_subset))
    if key in seen:
        return
    seen.add(key)
    builder = models.MODELS.get(t.model)
    if builder is None:
        raise ValueError(
            f"{_PREFIX}: unknown model {t.model!r}; expected one of {sorted(models.MODELS)}"
        )
    _check_options("model", t.model, t.model_options, known_options(builder, ("seed",)))
    if t.method != DENSE:
        fn = method_function(t.method)
        if fn is None:
            from pathnet.select.registry import METHODS

            raise ValueError(
                f"{_PREFIX}: unknown method {t.method!r}; expected one of "
                f"{sorted([*METHODS, DENSE])}"
            )
        if "data" in t.method_options:
            raise ValueError(
                f"{_PREFIX}: method_options: {t.method}'s data is set by the sweep "
                f"(10 training images per class); remove it"
            )
        known = known_options(fn, ("dag", "density", "seed", "model", "data"))
        _check_options("method", t.method, t.method_options, known)
    classes = dataset_facts(t.dataset)[1]
    outputs = model_outputs(builder, t.model_options)
    if outputs is not None and outputs < classes:
        raise ValueError(
            f"{_PREFIX}: model {t.model} has {outputs} outputs but {t.dataset} has {classes} "
            f"classes; set model_options.num_classes = {classes}"
        )
    for what in ("train_subset", "test_subset"):
        n = getattr(t, what)
        if n is not None and n < classes:
            raise ValueError(
                f"{_PREFIX}: {what} = {n} keeps no sample of each of the {classes} classes "
                f"of {t.dataset}; use at least {classes}"
            )


# ------------------------------------------------------------------------------ sweeps
_TOP_KEYS = ("name", "out", "data_root", "grid", "fixed", "method_options", "model_options")


def _table(name: str, value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{_PREFIX}: [{name}] must be a table{where}")
    for k in value:
        _key(name, k)
    return value


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
        """Check a parsed sweep document (the tables of the file) and build the config.

        Every trial is built and checked against the registries (methods, their options,
        models, their options, data sets and subset sizes) here, before anything runs.
        """
        where = f" in {source}" if source else ""
        if not isinstance(doc, Mapping):
            raise ValueError(f"{_PREFIX}: a sweep file must hold a table of settings{where}")
        _table("top level", doc, where)
        unknown = sorted(set(doc) - set(_TOP_KEYS))
        if unknown:
            hint = ""
            if set(unknown) & set(TRIAL_KEYS):
                hint = " (trial settings go in [grid] as lists or in [fixed] as single values)"
            raise ValueError(
                f"{_PREFIX}: unknown top-level key(s) {', '.join(unknown)}{where}{hint}; "
                f"known: {', '.join(_TOP_KEYS)}"
            )
        grid = _table("grid", doc.get("grid", {}), where)
        fixed = _table("fixed", doc.get("fixed", {}), where)
        _check_axes(grid, fixed, where)
        mo = _table("method_options", doc.get("method_options", {}), where)
        if not all(isinstance(v, Mapping) for v in mo.values()):
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
        seen: set[tuple[str, ...]] = set()
        for t in trials:
            _check_trial(t, seen)
        extra = sorted(set(self.method_options) - {t.method for t in trials})
        if extra:
            raise ValueError(
                f"{_PREFIX}: [method_options.{extra[0]}] names a method the grid does not run"
            )

    def override(self, settings: Mapping[str, Any]) -> SweepConfig:
        """This sweep with ``settings`` fixed for every trial (taken off the grid), checked.

        >>> c = SweepConfig.from_dict({"grid": {"method": ["phew"], "density": [0.1],
        ...                                     "epochs": [1, 2]}})
        >>> [t.train.epochs for t in c.override({"epochs": 3}).trials()]
        [3]
        """
        if not settings:
            return self
        doc = self.to_dict()
        doc["grid"] = {k: v for k, v in doc["grid"].items() if k not in settings}
        doc["fixed"].update(jsonable_settings(settings))
        return SweepConfig.from_dict(doc, source=self.source)

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


def jsonable_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings with tuples as lists (as a file would hold them)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _check_axes(grid: Mapping[str, Any], fixed: Mapping[str, Any], where: str) -> None:
    for table, value in (("grid", grid), ("fixed", fixed)):
        bad = sorted(set(value) - set(_GRIDDABLE))
        if bad:
            raise ValueError(
                f"{_PREFIX}: unknown setting(s) {', '.join(bad)} in [{table}]{where}; "
                f"known: {', '.join(_GRIDDABLE)}"
            )
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"{_PREFIX}: {', '.join(both)} set in both [grid] and [fixed]{where}")
    size = 1
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"{_PREFIX}: [grid] {key} must be a non-empty list, got {values!r}{where}"
            )
        size *= len(values)
    if size > MAX_TRIALS:
        raise ValueError(
            f"{_PREFIX}: [grid] describes {size:,} trials{where}; at most {MAX_TRIALS:,}"
        )


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read a sweep file: ``.toml``, or ``.yaml``/``.yml`` (with PyYAML), or ``.json``.

    Raises
    ------
    ValueError
        Unreadable file, duplicate or non-string keys, unknown keys, bad values,
        unknown models, methods or options, subsets too small.
    FileNotFoundError
        No such file.
    """
    from pathnet.experiments.files import read_document

    doc, p = read_document(path)
    return SweepConfig.from_dict(doc, source=p.resolve())
