"""Turn a benchmark result (:func:`nnef_tvm.bench.benchmark`) into text, JSON, CSV, plots.

The plotted numbers come from :func:`plot_series` / :func:`zoo_series`, which
return exactly the series handed to matplotlib, so callers (and tests) can see
what a plot shows without reading pixels. matplotlib is optional (the
``bench`` extra) and imported only when a plot is written, with the ``Agg``
backend (no display needed).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Optional

from ..errors import NNEFError

CSV_COLUMNS = ("model", "runtime", "target", "host", "device", "source", "status", "threads",
               "samples", "median_ms", "p90_ms", "min_ms", "mean_ms", "throughput_per_s",
               "peak_memory_bytes", "ratio_to_best_alternative", "best_alternative",
               "max_abs_error", "max_error_steps", "note")


def row_label(row: dict) -> str:
    """'nnef-tvm x86', 'nnef-tvm x86 @ tracker ...', 'onnxruntime'."""
    if row["runtime"] == "nnef-tvm":
        where = "" if row["host"] == "local" else f" @ {row['host']}"
        return f"nnef-tvm {row['target']}{where}"
    return row["runtime"]


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def header_lines(result: dict) -> list[str]:
    m, meth = result["machine"], result["method"]
    return [
        f"nnef-bench {result['model'].get('name')} ({result['model']['path']})",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}; date {result['date']}",
        f"timed: {meth['timed']}",
        f"remote: {meth['remote_timed']}",
        f"warmup {meth['warmup']}, repeat {meth['repeat']}, threads {meth['threads']}; "
        f"p90 {meth['percentile']}; throughput = {meth['throughput']}",
        f"memory: {meth['memory']}",
        f"inputs: {result.get('inputs_source')}; agreement vs "
        f"{result.get('agreement_reference') or 'nothing'}",
    ] + [f"compiled {name}: {c['kernels']} kernels; {_tuning_text(c.get('tuning'))}"
         for name, c in result.get("compiled", {}).items()]


def _tuning_text(t) -> str:
    if not t:
        return "default schedules (no tuning records found)"
    return (f"tuning store key {t.get('device_key')}: {t.get('tuned_kernels')} tuned, "
            f"{t.get('default_kernels')} default-scheduled kernels")


def format_table(result: dict) -> str:
    """The human-readable report: header, one line per runtime/device, notes, profiles."""
    lines = header_lines(result)
    cols = f"{'runtime':34s} {'median ms':>10s} {'p90 ms':>9s} {'min ms':>9s} {'inf/s':>9s} " \
           f"{'peak MiB':>9s} {'vs best alt':>11s} {'max abs err':>11s}  status"
    lines += ["", cols, "-" * len(cols)]
    for r in result["rows"]:
        ratio = "-" if r["ratio_to_best_alternative"] is None else \
            f"{r['ratio_to_best_alternative']:.2f}x"
        lines.append(f"{row_label(r)[:34]:34s} {_fmt(r['median_ms'], '10.4f'):>10s} "
                     f"{_fmt(r['p90_ms'], '9.4f'):>9s} {_fmt(r['min_ms'], '9.4f'):>9s} "
                     f"{_fmt(r['throughput_per_s'], '9.1f'):>9s} "
                     f"{_mib(r['peak_memory_bytes']):>9s} {ratio:>11s} "
                     f"{_fmt(r['max_abs_error'], '11.3g'):>11s}  {r['status']}")
    notes = [f"  {row_label(r)}: {r['note']}" for r in result["rows"] if r.get("note")]
    notes += [f"  {n}" for n in result.get("notes", [])]
    steps = [f"  {row_label(r)}: {r['max_error_steps']:.3g}" for r in result["rows"]
             if r.get("max_error_steps") is not None]
    if steps:
        notes += ["  max error of the quantized outputs in quantization steps:"] + steps
    srcs = [f"  {row_label(r)}: {r['source']}" for r in result["rows"]
            if r.get("source") and r["runtime"] != "nnef-tvm"]
    if srcs:
        lines += ["", "model each comparison runtime ran:"] + srcs
    if notes:
        lines += ["", "notes:"] + notes
    lines.append("vs best alt: median / fastest other runtime on the same host "
                 "(below 1.00x: faster than all of them)")
    from .profile import format_profile
    for r in result["rows"]:
        if r.get("profile"):
            lines += ["", format_profile(r["profile"], f"profile of {row_label(r)} "
                                                       "(VM instrument, per run):")]
    return "\n".join(lines)


def write_json(result: dict, path: str) -> str:
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=_jsonable)
        f.write("\n")
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def csv_rows(result: dict) -> list[dict]:
    """One dict per row with exactly :data:`CSV_COLUMNS`."""
    out = []
    for r in result["rows"]:
        row = {c: r.get(c) for c in CSV_COLUMNS}
        row["model"] = result["model"].get("name")
        out.append(row)
    return out


def write_csv(result_or_results, path: str) -> str:
    results = result_or_results if isinstance(result_or_results, list) else [result_or_results]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for res in results:
            for row in csv_rows(res):
                w.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


# ------------------------------------------------------------------ plots
def plot_series(result: dict) -> dict[str, dict[str, float]]:
    """{'median_ms': {label: value}, 'p90_ms': {...}} for the rows that ran."""
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    return {"median_ms": {row_label(r): r["median_ms"] for r in ok},
            "p90_ms": {row_label(r): r["p90_ms"] for r in ok}}


def zoo_series(results: list[dict]) -> tuple[list[str], dict[str, list[Optional[float]]]]:
    """(model names, {runtime label: median ms per model, None where it did not run})."""
    models = [res["model"].get("name") or os.path.basename(res["model"]["path"])
              for res in results]
    labels: list[str] = []
    for res in results:
        for r in res["rows"]:
            lab = row_label(r)
            if lab not in labels:
                labels.append(lab)
    series = {lab: [] for lab in labels}
    for res in results:
        by = {row_label(r): r for r in res["rows"]}
        for lab in labels:
            r = by.get(lab)
            series[lab].append(r["median_ms"] if r and r["status"] == "ok" else None)
    return models, {k: v for k, v in series.items() if any(x is not None for x in v)}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise NNEFError("--plot needs matplotlib (pip install matplotlib, or the 'bench' "
                        "extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_plot(result: dict, path: str) -> dict:
    """Bar chart of median (and p90) latency per runtime -> the plotted series."""
    plt = _pyplot()
    series = plot_series(result)
    labels = list(series["median_ms"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(labels) + 2), 4))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [series["median_ms"][k] for k in labels], 0.4,
           label="median")
    ax.bar([x + 0.2 for x in xs], [series["p90_ms"][k] for k in labels], 0.4, label="p90")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel("latency (ms, lower is better)")
    if labels and max(series["p90_ms"].values()) / max(min(series["median_ms"].values()),
                                                       1e-9) > 50:
        ax.set_yscale("log")
    m = result["machine"]
    ax.set_title(f"{result['model'].get('name')}: {m['cpu']} ({m['cores']} cores)",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return series


def write_zoo_plot(results: list[dict], path: str) -> dict:
    """Grouped bars: latency per model (groups) per runtime (bars), log scale -> series."""
    plt = _pyplot()
    models, series = zoo_series(results)
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(models) + 2), 4.5))
    for i, (lab, vals) in enumerate(series.items()):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(models))]
        ax.bar([x for x, v in zip(xs, vals) if v is not None],
               [v for v in vals if v is not None], width, label=lab)
    ax.set_xticks(list(range(len(models))))
    ax.set_xticklabels(models, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log scale, lower is better)")
    if results:
        m = results[0]["machine"]
        date = next((r["date"] for r in results if r.get("date")), "")
        ax.set_title(f"{m['cpu']} ({m['cores']} cores), {date[:10]}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return {"models": models, "series": series}
