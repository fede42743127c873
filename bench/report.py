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


# (profile, what, threshold): the figures issue #16 asks for, both profiles measured in the same run
TARGETS = [
    ("anchor-shop", "altus4_cached req/s >= 1210", lambda p: p["altus4_cached"]["throughput_rps"] >= 1210),
    ("anchor-shop", "altus4_cached p95 < 40 ms", lambda p: p["altus4_cached"]["p95_ms"] < 40),
    ("anchor-shop", "cached_vs_health >= 0.5", lambda p: p["ratios"]["cached_vs_health"] >= 0.5),
    ("anchor-shop", "uncached_vs_raw_mysql >= 0.8", lambda p: p["ratios"]["uncached_vs_raw_mysql"] >= 0.8),
    ("own", "uncached_vs_raw_mysql >= 1.0", lambda p: p["ratios"]["uncached_vs_raw_mysql"] >= 1.0),
    ("own", "cached_vs_health >= 0.5", lambda p: p["ratios"]["cached_vs_health"] >= 0.5),
]


def markdown(r: dict) -> str:
    rounds = r.get("rounds", 1)
    lines = [
        f"{r['users']} concurrent clients, {r['duration_s']:.0f} s per measurement, {rounds} interleaved round(s),"
        f" median round shown; HTTP client: {r.get('client', 'python')}; {r['machine']}.",
    ]
    for name, profile in r["profiles"].items():
        pages = profile.get("pages", 1)
        lines += [
            "",
            f"**{name}** (`{profile['database']}`, {profile['queries']} queries, 20-row pages"
            + (f", one of the first {pages} pages at random" if pages > 1 else ", first page")
            + "):",
            "",
            "| what | req/s (median) | req/s (each round) | p50 ms | p95 ms | p99 ms | CPU ms/request | failures |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, label, _ in ROWS:
            if key not in profile:
                continue
            s = profile[key]
            each = ", ".join(str(v) for v in s.get("rounds_rps", [s["throughput_rps"]]))
            lines.append(
                f"| {label} | {s['throughput_rps']} | {each} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |"
                f" {s.get('cpu_ms_per_request') or '—'} | {sum(s['failures'].values())} |"
            )
        lines += [
            "",
            "Ratios (median of the per-round ratios): "
            + "; ".join(f"{k} {v:.2f}" for k, v in profile["ratios"].items()),
        ]
    if "by_table_size" in r:
        lines += [
            "",
            f"p50 ms at one client by table size: {r['by_table_size']}"
            f" (the statement alone through PyMySQL: {r['raw_by_table_size']});"
            f" the same queries first, BM25 statistics cold (p50, max): {r['cold_by_table_size']};"
            f" by databases searched: {r['by_database_count']}",
        ]
    lines += ["", "Targets: " + "; ".join(targets(r))]
    return "\n".join(lines)


def targets(r: dict) -> list[str]:
    """Each target as `profile: what PASS|FAIL` (absent profiles are skipped)."""
    return [
        f"{name}: {what} {'PASS' if check(r['profiles'][name]) else 'FAIL'}"
        for name, what, check in TARGETS
        if name in r["profiles"]
    ]


def plot(r: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)")
        return
    profiles = r["profiles"]
    rows = [(key, short) for key, _, short in ROWS if any(key in p for p in profiles.values())]
    names = [short for _, short in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    width = 0.8 / len(profiles)
    for i, (name, profile) in enumerate(profiles.items()):
        xs = [x + i * width for x in range(len(rows))]
        axes[0].bar(xs, [profile[k]["throughput_rps"] if k in profile else 0 for k, _ in rows], width, label=name)
        axes[1].bar(xs, [profile[k]["p95_ms"] if k in profile else 0 for k, _ in rows], width, label=name)
    for ax, title in zip(axes[:2], (f"throughput, {r['users']} clients (req/s, log)", "p95 latency (ms, log)")):
        ax.set_xticks([x + width * (len(profiles) - 1) / 2 for x in range(len(rows))], names, rotation=20)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend()
    if "by_table_size" not in r:
        axes[2].set_visible(False)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        return
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
    fig.suptitle(f"Altus 4 benchmark — profiles {', '.join(profiles)}, {r['machine']}, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
