"""Reports across run folders: ``reprank report RUN_OR_SWEEP_DIR... [--output DIR] [--metric NAME]``.

Reads each run's ``metrics.json`` (nested sections flattened to dotted names, scalars only) and the
parameters in its ``run.json``; a sweep folder stands for its finished points. Writes into a new folder:

- ``runs.csv``: one row per run: its parameters and every metric (see :func:`load_table` for ``<parameter>``
  in metric names);
- ``aggregate.csv``: one row per (group, metric), where a group is one combination of the parameters that
  vary across the runs other than ``seed``: mean, std (sample, ddof 1), n and a 95% interval for the mean
  over the seeds (Student t: mean ± t(0.975, n-1)·std/√n; none for n = 1);
- ``figures/<metric>.png``: a bar per group (mean, error bar one std) with the seeds as dots; and for each plotted
  ``<prefix>safe_rate`` with its ``<prefix>over_refusal_rate``, ``figures/tradeoff-<metric>.png``: safety against
  over-refusal, a point per group at the means with their 95% intervals (``reprank.running.report_plots``);
- ``report.html``: all of it in one file that opens offline (figures inlined), with each run's parameters,
  git commit and package versions.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import re
from pathlib import Path

import pandas as pd

from reprank.base.errors import UserError
from reprank.base.fileio import atomic_write_text, new_output_folder
from reprank.measure.intervals import t_half_width
from reprank.running.report_plots import group_labels, plot_tradeoff, tradeoff_pairs
from reprank.running.runs import MOVED_ASIDE, new_run_dir, read_metrics, read_run_record, run_finished

DEFAULT_PATTERNS = ("safe_rate", "over_refusal")
INTERVAL_ENDS = ("_low", "_high")  # evaluate.summarize's interval of each rate
SCALARS = (str, int, float, bool, type(None))


def collect_runs(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """The run folders behind ``paths`` (a sweep folder gives its finished points), and what was left out."""
    found, left_out = [], []
    for path in map(Path, paths):
        if (path / "run.json").is_file() or (path / "metrics.json").is_file():
            found.append(path)
            if not run_finished(read_run_record(path)):
                left_out.append(f"{path}: included, but the run did not finish every notebook")
        elif path.is_dir():
            children = sorted(c for c in path.iterdir() if c.is_dir() and (c / "run.json").is_file())
            moved = [c.name for c in children if MOVED_ASIDE.search(c.name)]
            if moved:  # one line for all of them: a sweep rerun many times leaves dozens
                left_out.append(f"{path}: {len(moved)} earlier attempt(s) moved aside by reruns of the sweep "
                                f"({', '.join(moved[:3])}{', ...' if len(moved) > 3 else ''})")
            for child in children:
                record = read_run_record(child)
                if MOVED_ASIDE.search(child.name):
                    continue
                elif not run_finished(record):
                    left_out.append(f"{child}: not finished (status {record.get('status')!r})")
                else:
                    found.append(child)
            if not children:
                raise UserError(f"{path} holds no run folders (no run.json in it or its subfolders)")
        else:
            raise UserError(f"No run or sweep folder at {path}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise UserError("No finished runs to report on")
    return unique, left_out


def frontier_verdicts(path: str | Path, arm: str = "paper") -> pd.DataFrame:
    """``arm``'s matched-strength verdicts (notebook 04 with ``frontier = True``) in every finished run under
    ``path``: one row per run, judge and source, with the run's folder name and seed. Runs without verdicts
    (notebook 04 run without the frontier, or other notebooks) are skipped; none at all is a user error."""
    rows = []
    for run in collect_runs([path])[0]:
        found = read_metrics(run).get("04_alignment", {}).get("frontier") or {}
        seed = read_run_record(run).get("parameters", {}).get("seed")
        rows += [{"run": run.name, "seed": seed, **v} for v in found.get("verdicts", []) if v.get("arm") == arm]
    if not rows:
        raise UserError(f"{path}: no finished run there has frontier verdicts of {arm!r}; run notebook 04 with "
                        "frontier = True (the sweep profiles/sweeps/cpu-frontier.yaml) first")
    return pd.DataFrame(rows)


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested dicts to dotted keys; only scalars are kept (lists and arrays are left out)."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, SCALARS):
            flat[name] = value
    return flat


def _label(run_dir: Path) -> str:
    return f"{run_dir.parent.name}/{run_dir.name}"


def load_table(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per run: ``run``, its parameters, then its metrics; returns (table, parameters, metrics).

    Runs of a sweep often key their metrics by their own parameter value (notebook 04 run with
    ``methods: dpo`` writes ``04_alignment.results.dpo.safe_rate``). So that such metrics line up across
    runs, a name part equal to the run's value of a text parameter that varies across the runs (seed
    aside) is written ``<parameter>``: ``04_alignment.results.<methods>.safe_rate``.
    """
    records = [read_run_record(run_dir) for run_dir in run_dirs]
    given = [{k: v if isinstance(v, SCALARS) else json.dumps(v) for k, v in r.get("parameters", {}).items()}
             for r in records]
    names = list(dict.fromkeys(k for g in given for k in g))
    keyed = [k for k in names if k != "seed" and all(isinstance(g.get(k), str) for g in given)
             and len({g[k] for g in given}) > 1]
    rows, metrics = [], {}
    for run_dir, record, values in zip(run_dirs, records, given):
        measured = {_generalize(name, values, keyed): v for name, v in flatten(read_metrics(run_dir)).items()}
        if "seconds" in record:
            measured["run.seconds"] = record["seconds"]
        metrics.update(dict.fromkeys(measured))
        rows.append({"run": _label(run_dir), **values, **measured})
    table = pd.DataFrame(rows, columns=["run", *names, *metrics])
    return table, names, list(metrics)


def _generalize(name: str, values: dict, keyed: list[str]) -> str:
    parts = name.split(".")
    for key in keyed:
        parts = [f"<{key}>" if part == values[key] else part for part in parts]
    return ".".join(parts)


def varying(table: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if table[c].astype(str).nunique(dropna=False) > 1]


def numeric_metrics(table: pd.DataFrame, metrics: list[str]) -> list[str]:
    return [m for m in metrics
            if pd.api.types.is_numeric_dtype(table[m]) and not pd.api.types.is_bool_dtype(table[m])]


def aggregate(table: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, std (ddof 1), n and the 95% t-interval of the mean (``ci95_low``, ``ci95_high``) of each metric
    within each group of ``group_by`` values; std and interval are empty for n = 1.

    A t-interval, not mean ± 1.96·std/√n: with a handful of seeds the normal one is far too narrow.
    """
    long = table.melt(id_vars=["run", *group_by], value_vars=metrics, var_name="metric").dropna(subset=["value"])
    long["value"] = long["value"].astype(float)
    stats = long.groupby([*group_by, "metric"], sort=False, dropna=False)["value"].agg(["mean", "std", "count"])
    stats = stats.rename(columns={"count": "n"}).reset_index()
    half = t_half_width(stats["std"], stats.n)
    return stats.assign(ci95_low=stats["mean"] - half, ci95_high=stats["mean"] + half)



def choose_metrics(numeric: list[str], table: pd.DataFrame, requested: list[str] | None = None,
                   few: int = 4) -> list[str]:
    """The metrics to plot: those asked for (a dotted name, or a part of names), else every name with
    ``safe_rate`` or ``over_refusal``, else the first few that vary across runs (else the first few).
    The ends of a rate's interval (``<rate>_low``, ``<rate>_high``) are left out unless asked for by name."""
    def wanted_in(part: str, name: str) -> bool:
        return part in name and (not name.endswith(INTERVAL_ENDS) or part.endswith(INTERVAL_ENDS))

    if requested:
        chosen = []
        for wanted in requested:
            matches = [m for m in numeric if m == wanted] or [m for m in numeric if wanted_in(wanted, m)]
            if not matches:
                raise UserError(f"--metric {wanted}: no numeric metric matches; there are {numeric}")
            chosen += [m for m in matches if m not in chosen]
        return chosen
    chosen = [m for m in numeric if any(wanted_in(p, m) for p in DEFAULT_PATTERNS)]
    return chosen or ([m for m in numeric if table[m].nunique() > 1][:few] or numeric[:few])


def plot_metric(table: pd.DataFrame, group_by: list[str], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = table.assign(group=group_labels(table, group_by))[["group", metric]].dropna()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * data.group.nunique() + 2), 3.4))
    sns.barplot(data=data, x="group", y=metric, errorbar="sd", color="#8fb3d9", ax=ax)
    sns.stripplot(data=data, x="group", y=metric, color="black", size=4, ax=ax)
    ax.set_xlabel(", ".join(group_by) if group_by else "")
    ax.set_title(f"{metric}: mean ± std over seeds", fontsize=10)
    if data.group.nunique() > 4:
        ax.tick_params(axis="x", labelrotation=30)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _summary_table(stats: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Groups × chosen metrics, each cell ``mean ± std (n=…, 95% CI low–high)``; n = 1 gives ``mean (n=1)``."""
    chosen = stats[stats.metric.isin(metrics)].copy()
    chosen["cell"] = [f"{m:.4g}" + ("" if pd.isna(s) else f" ± {s:.2g}") + f" (n={n}"
                      + ("" if pd.isna(lo) else f", 95% CI {lo:.3g}–{hi:.3g}") + ")"
                      for m, s, n, lo, hi in zip(chosen["mean"], chosen["std"], chosen["n"], chosen.ci95_low,
                                                 chosen.ci95_high)]
    index = group_by or None
    if index is None:
        chosen["group"] = "all runs"
        index = ["group"]
    return chosen.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)[metrics]


def _provenance(run_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, packages = [], []
    for run_dir in run_dirs:
        record = read_run_record(run_dir)
        sweep = record.get("sweep") or {}
        rows.append({"run": _label(run_dir), "status": record.get("status"), "profile": record.get("profile"),
                     "notebooks": " ".join(record.get("notebooks") or []), "git_commit": record.get("git_commit"),
                     "sweep": sweep.get("name"), "from_run": (record.get("from_run") or {}).get("path"),
                     "finished_at": record.get("finished_at"), "seconds": record.get("seconds"),
                     "python": record.get("python")})
        packages.append({"run": _label(run_dir), **(record.get("packages") or {})})
    packages = pd.DataFrame(packages)
    same = packages.drop(columns="run").astype(str).nunique() <= 1
    if same.all():  # one row says it for every run
        packages = packages.drop(columns="run").head(1).assign(run=f"all {len(run_dirs)} runs")
    return pd.DataFrame(rows), packages


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f2f2f2}figure{display:inline-block;margin:.5em}img{max-width:38em}details{margin:.5em 0}
code{background:#f2f2f2;padding:0 .2em}"""


def _html(table, stats, group_by, metrics, figures, run_dirs, left_out, inputs) -> str:
    float_format = "{:.4g}".format
    provenance, packages = _provenance(run_dirs)
    params = [c for c in table.columns if c != "run" and "." not in c]
    shown = ["run", *varying(table, params), *metrics]
    sources = ", ".join(f"<code>{html.escape(str(p))}</code>" for p in inputs)
    parts = [
        f"<h1>reprank report</h1><p>{len(run_dirs)} runs from {sources}; "
        f"made {dt.datetime.now():%Y-%m-%d %H:%M}. Grouped by <b>{html.escape(', '.join(group_by) or 'nothing')}</b> "
        "(the parameters that vary across the runs, except <code>seed</code>); spread over the rest.</p>",
        "".join(f"<p>In metric names, <code>&lt;{html.escape(p)}&gt;</code> stands for each run's own value of "
                f"<code>{html.escape(p)}</code>.</p>" for p in params if any(f"<{p}>" in m for m in table.columns)),
        "<h2>Summary: mean ± std (n, 95% CI of the mean over seeds)</h2>",
        _summary_table(stats, group_by, metrics).to_html(),
        "<h2>Figures</h2>", "".join(_img(f) for f in figures),
        "<h2>Runs</h2>", table[shown].to_html(index=False, float_format=float_format, na_rep=""),
        "<details><summary>Every metric, aggregated (aggregate.csv)</summary>",
        stats.to_html(index=False, float_format=float_format, na_rep=""), "</details>",
        "<details><summary>Every metric of every run (runs.csv)</summary>",
        table.to_html(index=False, float_format=float_format, na_rep=""), "</details>",
        "<h2>Parameters</h2>", table[["run", *params]].to_html(index=False, na_rep=""),
        "<h2>Provenance</h2>", provenance.to_html(index=False, na_rep=""),
        "<h3>Package versions</h3>", packages.to_html(index=False, na_rep=""),
    ]
    if left_out:
        parts += ["<h3>Left out</h3><ul>", *(f"<li>{html.escape(line)}</li>" for line in left_out), "</ul>"]
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>reprank report</title><style>{CSS}</style>'
            f"</head><body>{''.join(parts)}</body></html>\n")


def make_report(paths: list[str | Path], output: str | Path | None = None, metrics: list[str] | None = None) -> Path:
    """Write runs.csv, aggregate.csv, figures/ and report.html for the runs behind ``paths``; returns the folder."""
    run_dirs, left_out = collect_runs(paths)
    table, params, metric_names = load_table(run_dirs)
    group_by = [p for p in varying(table, params) if p != "seed"]
    table[group_by] = table[group_by].astype(object).where(table[group_by].notna(), "(unset)")
    numeric = numeric_metrics(table, metric_names)
    if not numeric:
        raise UserError("The runs have no numeric metrics to compare")
    chosen = choose_metrics(numeric, table, metrics)
    stats = aggregate(table, group_by, numeric)
    out = new_run_dir(prefix="report-") if output is None else new_output_folder(output, "a report")
    table.to_csv(out / "runs.csv", index=False)
    stats.to_csv(out / "aggregate.csv", index=False)
    figures = [plot_metric(table, group_by, m, out / "figures" / f"{_slug(m)}.png") for m in chosen]
    figures += [plot_tradeoff(table, stats, group_by, safe, over, out / "figures" / f"tradeoff-{_slug(safe)}.png")
                for safe, over in tradeoff_pairs(chosen)]
    atomic_write_text(out / "report.html", _html(table, stats, group_by, chosen, figures, run_dirs, left_out, paths))
    for line in left_out:
        print(f"[report] note: {line}")
    print(f"[report] {len(run_dirs)} runs, grouped by {group_by or 'nothing'}; {out / 'report.html'}")
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def cmd_report(args: argparse.Namespace) -> int:
    make_report(args.paths, args.output, args.metric)
    return 0
