"""``pathnet experiment dst``: path-guided dynamic sparse training against SET and RigL.

MLP 784-300-100-10 and LeNet5 on the full Fashion-MNIST at 5% and 2%, three seeds. Each
starts from a PHEW mask or a uniformly random (per layer) mask and either keeps it
(static) or changes it during training with :class:`pathnet.train.dst.DST`: SET, RigL,
PHEW-walk regrowth (``rule="phew"``) and its width-restoring variant
(``regrow="dead_units"``). The report gives the test accuracy (mean ± std over seeds),
whether each difference exceeds the seed spread, and the evolution of width, effective
parameters and path-kernel trace along training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathnet.experiments.config import Trial
from pathnet.experiments.named import (
    SEEDS,
    Experiment,
    Results,
    _machine,
    _seeds_note,
    _summary,
    _train_settings,
    _values,
    _write_rows,
    _write_text,
    claim_line,
    fmt_ms,
    register,
)

__all__ = ["VARIANTS"]

#: ``name -> DST options (None: a static mask)``: the variants, in table order.
VARIANTS: dict[str, dict[str, Any] | None] = {
    "static": None,
    "set": {"rule": "set", "regrow": "any"},
    "rigl": {"rule": "rigl", "regrow": "any"},
    "phew-regrow": {"rule": "phew", "regrow": "any"},
    "phew-dead-units": {"rule": "phew", "regrow": "dead_units"},
}
STARTS = ("phew", "random")
DENSITIES = (0.05, 0.02)

_DEFAULT = {
    "mlp": {"epochs": 5, "log_every": 50},
    "lenet5": {"epochs": 3, "log_every": 25},
}
_QUICK = {"epochs": 1, "train_subset": 500, "test_subset": 200, "batch_size": 64, "log_every": 2}
_DST = {"every": 100, "fraction": 0.3, "schedule": "cosine", "stop": 0.75}
_EVERY = {"default": 100, "quick": 2, "paper": 1000}  # optimizer steps between updates


def _variant(t: Trial) -> str:
    if t.dst is None:
        return "static"
    for name, opts in VARIANTS.items():
        if opts is not None and all(t.dst.get(k) == v for k, v in opts.items()):
            return name
    return "dst"


def _trials(profile: str) -> list[Trial]:
    quick = profile == "quick"
    models = ("mlp",) if quick else ("mlp", "lenet5")
    densities = (0.05,) if quick else DENSITIES
    seeds = (0,) if quick else SEEDS
    out = []
    for model in models:
        fixed = _train_settings(profile, _DEFAULT[model], _QUICK, paper_log_every=100)
        extra = {**_DST, "every": _EVERY[profile]}
        for seed in seeds:
            for start in STARTS:
                for opts in VARIANTS.values():
                    for d in densities:
                        dst = None if opts is None else {**extra, **opts, "seed": seed}
                        out.append(
                            Trial.from_settings(
                                {"method": start, "density": d, "model": model,
                                 "dataset": "fashion-mnist", "seed": seed, "init_seed": seed,
                                 "mask_seed": seed, "dst": dst, **fixed}
                            )
                        )  # fmt: skip
    return out


def _rows(results: Results) -> list[dict[str, Any]]:
    rows = []
    for t, doc in results:
        final = (doc or {}).get("final") or {}
        log = (doc or {}).get("dst_log") or []
        rows.append(
            {
                "trial": t.name,
                "model": t.model,
                "start": t.method,
                "variant": _variant(t),
                "density": t.density,
                "seed": t.seed,
                "epochs": t.train.epochs,
                "finished": doc is not None,
                "test_acc": final.get("test_acc"),
                "train_loss": final.get("train_loss"),
                "updates": max(0, len(log) - 1),
                "final_density": (doc or {}).get("final_density"),
                "effective_params_end": log[-1].get("effective_params") if log else None,
                "log10_trace_end": log[-1].get("log10_trace") if log else None,
                "train_seconds": round(
                    sum(float(h.get("time_s") or 0) for h in (doc or {}).get("history") or []), 2
                ),
            }
        )
    return rows


def _log_rows(results: Results) -> list[dict[str, Any]]:
    out = []
    for t, doc in results:
        for r in (doc or {}).get("dst_log") or []:
            widths = r.get("widths") or {}
            out.append(
                {
                    "model": t.model,
                    "start": t.method,
                    "variant": _variant(t),
                    "density": t.density,
                    "seed": t.seed,
                    "step": r["step"],
                    "fraction": r.get("fraction"),
                    "dropped": r.get("dropped"),
                    "fallback": r.get("fallback"),
                    "density_now": r.get("density"),
                    "alive_units": sum(int(v) for v in widths.values()),
                    "min_width": min((int(v) for v in widths.values()), default=None),
                    "effective_params": r.get("effective_params"),
                    "log10_paths": r.get("log10_paths"),
                    "log10_trace": r.get("log10_trace"),
                }
            )
    return out


def _density_drift(log: Sequence[Mapping[str, Any]]) -> float | None:
    """The largest ``|density at an update - density at step 0|`` of any run."""
    start: dict[tuple[Any, ...], float] = {}
    worst = None
    for r in log:
        key = (r["model"], r["start"], r["variant"], r["density"], r["seed"])
        if r["step"] == 0:
            start[key] = float(r["density_now"])
    for r in log:
        key = (r["model"], r["start"], r["variant"], r["density"], r["seed"])
        if key in start:
            d = abs(float(r["density_now"]) - start[key])
            worst = d if worst is None else max(worst, d)
    return worst


def _evolution_figure(log: Sequence[Mapping[str, Any]], model: str, density: float) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    metrics = (
        ("alive_units", "alive units (all layers)"),
        ("effective_params", "effective parameters"),
        ("log10_trace", "log10 path-kernel trace"),
    )
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, len(metrics))
    palette = {"set": "#7570b3", "rigl": "#d95f02", "phew-regrow": "#1b9e77",
               "phew-dead-units": "#66a61e"}  # fmt: skip
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for variant, color in palette.items():
            for start, ls in (("phew", "-"), ("random", "--")):
                sub = [r for r in log if r["model"] == model and r["density"] == density
                       and r["variant"] == variant and r["start"] == start
                       and r[key] is not None]  # fmt: skip
                if not sub:
                    continue
                steps = sorted({int(r["step"]) for r in sub})
                mean = [np.mean([float(r[key]) for r in sub if r["step"] == s]) for s in steps]
                ax.plot(steps, mean, ls, color=color, label=f"{variant} from {start}")
        ax.set_xlabel("optimizer step")
        ax.set_title(label, fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False, fontsize=8,
               title=f"{model} at {100 * density:g}%: mean over seeds at each update "
                     "(solid: from PHEW, dashed: from random)", title_fontsize=8)  # fmt: skip
    return fig


def _report(results: Results, folder: Path, profile: str) -> list[Path]:
    from pathnet.figures import save_figure

    rows = _rows(results)
    log = _log_rows(results)
    written = [_write_rows(rows, folder / "results.csv"), _write_rows(log, folder / "log.csv")]
    summary = _summary(rows, ("model", "start", "variant", "density"), ("test_acc",))
    written.append(_write_rows(summary, folder / "summary.csv"))
    densities = sorted({r["density"] for r in rows}, reverse=True)
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        for d in densities:
            if any(r["model"] == model and r["density"] == d for r in log):
                fig = _evolution_figure(log, model, d)
                written.append(save_figure(fig, folder / f"evolution_{model}_d{d:g}.png"))
    t0 = results[0][0]
    dst0 = next((t.dst for t, _ in results if t.dst), {}) or {}
    lines = [
        f"# dst: dynamic sparse training on {t0.dataset} ({profile} profile)",
        "",
        f"{_seeds_note(rows)}. Training: lr {t0.train.lr:g}, batch {t0.train.batch_size}, "
        + ", ".join(
            f"{m} {next(t.train.epochs for t, _ in results if t.model == m)} epoch(s)"
            for m in models
        )
        + f". Updates every {dst0.get('every')} steps up to {dst0.get('stop')} of the run, "
        f"drop fraction {dst0.get('fraction')} ({dst0.get('schedule')}). Machine: {_machine()}.",
        "",
        "## Test accuracy (%), mean ± std over seeds",
        "",
    ]
    head = "| model | density | start | " + " | ".join(VARIANTS) + " |"
    lines += [head, "|" + "---|" * (len(VARIANTS) + 3)]
    for model in models:
        for d in densities:
            for start in STARTS:
                cell = {"model": model, "start": start, "density": d}
                cells = [fmt_ms(_values(rows, "test_acc", variant=v, **cell)) for v in VARIANTS]
                lines.append(f"| {model} | {100 * d:g}% | {start} | " + " | ".join(cells) + " |")
    lines += ["", "## Does path-guided regrowth help?", ""]
    for model in models:
        for d in densities:
            for start in STARTS:
                cell = {"model": model, "start": start, "density": d}
                for other in ("static", "set", "rigl"):
                    lines.append("- " + claim_line(
                        f"{model} {100 * d:g}% from {start}: PHEW regrowth vs {other}",
                        "phew-regrow", _values(rows, "test_acc", variant="phew-regrow", **cell),
                        other, _values(rows, "test_acc", variant=other, **cell),
                    ))  # fmt: skip
    lines.append("")
    drift = _density_drift(log)
    if drift is not None:
        lines.append(
            f"Density after every update minus the start mask's density, largest over all "
            f"dynamic runs: {drift:.3g} (the number of kept weights per layer is constant)."
        )
    phew_rows = [r for r in log if r["variant"].startswith("phew") and r["step"]]
    falls = [r for r in phew_rows if r["fallback"]]
    grown = sum(int(r["dropped"] or 0) for r in phew_rows)
    fell = sum(int(r["fallback"] or 0) for r in phew_rows)
    lines.append(
        f"PHEW regrowth: {len(falls)} of {len(phew_rows)} updates reached the walk limit and "
        f"grew part of a quota at random; {fell} of {grown} grown weights "
        f"({100 * fell / max(1, grown):.2f}%) came from that fallback (per run: log.csv)."
    )
    written.append(_write_text(folder / "report.md", "\n".join(lines) + "\n"))
    return written


register(
    Experiment(
        "dst",
        "dynamic sparse training: static PHEW/random vs SET, RigL, PHEW-walk regrowth "
        "(and dead-unit regrowth) from PHEW and random masks; MLP and LeNet5 at 5/2%, 3 seeds",
        grid="fmnist-dst",
        trials=_trials,
        report=_report,
        budget={
            "default": "full Fashion-MNIST; MLP 5 epochs, LeNet5 3 epochs; an update every 100 "
            "steps up to 75% of the run, drop fraction 0.3 (cosine); 120 trials",
            "quick": "MLP at 5%, 1 seed, 500 images, an update every 2 steps",
            "paper": "the authors' recipe (160 epochs), an update every 1000 steps",
        },
    )
)
