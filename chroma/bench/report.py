"""The benchmark's output: the terminal table and the PNG plots."""

from __future__ import annotations

import platform
from pathlib import Path

ROWS = [
    # (label, phase, key, unit); unit "s" prints ms and ratios time/time, "/s" prints a rate
    ("add: total", "add", "seconds", "s"),
    ("add: vectors/s", "add", "per_second", "/s"),
    ("single query: median", "single query", "median", "s"),
    ("single query: p95", "single query", "p95", "s"),
    ("single query: recall@10", "single query", "recall", "recall"),
    ("batch query: total", "batch query", "seconds", "s"),
    ("batch query: queries/s", "batch query", "per_second", "/s"),
    ("batch query: recall@10", "batch query", "recall", "recall"),
    ("get by ids: median", "get by ids", "median", "s"),
    ("update: total", "update", "seconds", "s"),
    ("delete: total", "delete", "seconds", "s"),
    ("reopen + first query", "reopen", "seconds", "s"),
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rows(results: list[dict]) -> list[tuple[str, str, str, str]]:
    rows = list(ROWS)
    filtered = [phase for phase in results[0]["phases"] if phase.startswith("filtered ")]
    at = rows.index(("get by ids: median", "get by ids", "median", "s"))
    for phase in reversed(filtered):
        share = f"{float(phase.split()[1]) * 100:g}%"
        rows[at:at] = [(f"filtered {share}: median", phase, "median", "s"),
                       (f"filtered {share}: recall@10", phase, "recall", "recall")]
    return rows


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e3:,.2f} ms" if value < 10 else f"{value:,.1f} s"
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "recall":
        return f"{value:.3f}"
    return f"{value / 2**20:,.0f} MiB"


def table(results: list[dict], baseline: str) -> str:
    """Medians per combination, each with its ratio to ``baseline`` (x slower; x fewer per second)."""
    base = next(r for r in results if r["combination"] == baseline)
    headers = ["metric"] + [r["combination"] for r in results]
    lines = []
    for label, phase, key, unit in _rows(results) + [("peak memory", None, "peak_memory_bytes", "bytes")]:
        cells = [label]
        for result in results:
            value = result.get(key) if phase is None else result["phases"].get(phase, {}).get(key)
            ref = base.get(key) if phase is None else base["phases"].get(phase, {}).get(key)
            if value is None:
                cells.append("-")
                continue
            text = _format(value, unit)
            if result is not base and ref and unit in ("s", "/s", "bytes"):
                ratio = value / ref if unit != "/s" else ref / value
                text += f" ({ratio:.2f}x)"
            cells.append(text)
        lines.append(cells)
    widths = [max(len(row[i]) for row in [headers, *lines]) for i in range(len(headers))]
    out = [f"ratios (in parentheses): against {baseline}; above 1 is slower or bigger"]
    out.append("  ".join([headers[0].ljust(widths[0])] + [h.rjust(w) for h, w in zip(headers[1:], widths[1:])]))
    out.append("  ".join("-" * w for w in widths))
    for row in lines:
        out.append("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    return "\n".join(out)


def plots(results: list[dict], curves: list[dict], output: Path) -> list[Path]:
    """``latency.png`` (bars per combination) and ``recall_qps.png`` (a curve per index)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    phases = ["single query", "batch query"] + [p for p in results[0]["phases"] if p.startswith("filtered ")]
    figure, axes = plt.subplots(figsize=(min(14, 3 + 0.35 * len(phases) * len(results)) + 3.5, 4.5))
    width = 0.8 / len(results)
    # a color of its own for each combination (the default cycle repeats after 10), the key beside the axes
    colors = plt.get_cmap("tab20").colors
    for i, result in enumerate(results):
        values = []
        for phase in phases:
            figures = result["phases"].get(phase, {})
            values.append(1e3 * figures.get("median", figures.get("seconds", 0.0)))
        axes.bar([p + i * width for p in range(len(phases))], values, width, label=result["combination"],
                 color=colors[i % len(colors)])
    axes.set_xticks([p + width * (len(results) - 1) / 2 for p in range(len(phases))])
    axes.set_xticklabels([f"filtered\n{float(p.split()[1]) * 100:g}%" if p.startswith("filtered ") else p
                         for p in phases])
    axes.set_ylabel("latency, ms (median; batch: whole batch)")
    axes.set_yscale("log")
    axes.set_title("Query latency per combination")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(output / "latency.png", dpi=120)
    plt.close(figure)
    written.append(output / "latency.png")

    if curves:
        figure, axes = plt.subplots(figsize=(6.5, 4.5))
        for curve in curves:
            points = curve["points"]
            axes.plot([p["recall"] for p in points], [p["qps"] for p in points], marker="o", label=curve["index"])
            for p in points:
                if p["ef"] is not None:
                    axes.annotate(f"ef {p['ef']}", (p["recall"], p["qps"]), fontsize=7, xytext=(3, 3),
                                  textcoords="offset points")
        axes.set_xlabel("recall@10")
        axes.set_ylabel("queries per second (1 thread)")
        axes.set_yscale("log")
        axes.set_title("Recall against speed, per index")
        axes.legend()
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(output / "recall_qps.png", dpi=120)
        plt.close(figure)
        written.append(output / "recall_qps.png")
    return written
