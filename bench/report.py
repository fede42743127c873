"""bench/run.py's results as a Markdown table (for the README) and a PNG plot."""

from __future__ import annotations

from pathlib import Path

ROWS = [
    ("raw_mysql", "raw MySQL FULLTEXT (PyMySQL)", "raw MySQL"),
    ("raw_mysql_altus4_sql", "raw MySQL, Altus 4's own statement", "raw, same SQL"),
    ("altus4_uncached", "Altus 4 search, uncached (BM25, the default)", "uncached"),
    ("altus4_uncached_mysql_order", "Altus 4 search, uncached, MySQL's order", "uncached, mysql order"),
    ("altus4_cached", "Altus 4 search, cached", "cached"),
    ("altus4_cached_at_target_rate", "Altus 4 search, cached, at the target load", "cached @ target"),
    ("health", "GET /health", "/health"),
]


def markdown(r: dict) -> str:
    rounds = r.get("rounds", 1)
    lines = [
        f"{r['products']:,} products, {r['users']} concurrent clients, {r['duration_s']:.0f} s per measurement,"
        f" {rounds} interleaved round(s), median round shown; HTTP client: {r.get('client', 'python')};"
        f" {r['machine']}:",
        "",
        "| what | req/s (median) | req/s (each round) | p50 ms | p95 ms | p99 ms | CPU ms/request | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name, _ in ROWS:
        if key not in r:
            continue
        s = r[key]
        each = ", ".join(str(v) for v in s.get("rounds_rps", [s["throughput_rps"]]))
        lines.append(
            f"| {name} | {s['throughput_rps']} | {each} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |"
            f" {s.get('cpu_ms_per_request') or '—'} | {sum(s['failures'].values())} |"
        )
    ratios = r["ratios"]
    lines.append("")
    lines.append("Ratios (median of the per-round ratios): " + "; ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    lines.append(
        f"p50 ms at one client by table size: {r['by_table_size']}"
        + (f" (the statement alone through PyMySQL: {r['raw_by_table_size']})" if "raw_by_table_size" in r else "")
        + (
            f"; the same queries first, BM25 statistics cold (p50, max): {r['cold_by_table_size']}"
            if "cold_by_table_size" in r
            else ""
        )
        + f"; by databases searched: {r['by_database_count']}"
    )
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)")
        return
    rows = [(key, short) for key, _, short in ROWS if key in r]
    names = [short for _, short in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    axes[0].bar(
        names,
        [r[k]["throughput_rps"] for k, _ in rows],
        color=["#888", "#bbb", "#1f77b4", "#2ca02c", "#98df8a", "#ff7f0e"][: len(rows)],
    )
    axes[0].set_title(f"throughput, {r['users']} clients (req/s, log)")
    axes[0].set_yscale("log")
    axes[0].tick_params(axis="x", labelrotation=20)
    width = 0.25
    for i, pct in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        axes[1].bar([x + i * width for x in range(len(rows))], [r[k][pct] for k, _ in rows], width, label=pct)
    axes[1].set_xticks([x + width for x in range(len(rows))], names, rotation=20)
    axes[1].set_title("latency (ms)")
    axes[1].legend()
    axes[2].plot(
        [int(s) for s in r["by_table_size"]],
        list(r["by_table_size"].values()),
        marker="o",
        label="by table size (rows)",
    )
    if "raw_by_table_size" in r:
        axes[2].plot(
            [int(s) for s in r["raw_by_table_size"]],
            list(r["raw_by_table_size"].values()),
            marker="o",
            linestyle="--",
            color="#888",
            label="the statement alone (PyMySQL)",
        )
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("rows")
    twin = axes[2].twiny()
    twin.plot(
        [int(n) for n in r["by_database_count"]],
        list(r["by_database_count"].values()),
        marker="s",
        color="#d62728",
        label="by databases searched",
    )
    twin.set_xlabel("databases searched")
    axes[2].set_title(
        "p50 ms (log), 1 client: by rows (blue; grey: the statement alone)\nand by databases searched (red, top axis)"
    )
    fig.suptitle(f"Altus 4 benchmark — {r['products']:,} products, {r['machine']}, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
