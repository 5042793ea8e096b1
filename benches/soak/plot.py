#!/usr/bin/env python3
"""Draws a soak's CSV (`timed bench --soak ... --csv FILE`) as one PNG: latency percentiles,
finalized rate, and each node's resident memory, open files, database size and CPU, against
time. Usage: benches/soak/plot.py SOAK.csv OUT.png [TITLE]

Needs matplotlib (`python3 -m pip install matplotlib`); benches/soak/run.sh installs it when
it is missing.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt  # noqa: E402


def column(rows, name):
    """A column as floats; an empty cell (a figure the bench could not read) is None."""
    return [float(r[name]) if r.get(name, "") != "" else None for r in rows]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no rows")
    title = sys.argv[3] if len(sys.argv) > 3 else f"soak: {src}"
    minutes = [float(r["elapsed_s"]) / 60 for r in rows]
    nodes = sorted({c.split("_")[0] for c in rows[0] if c.startswith("node")},
                   key=lambda n: int(n[4:]))

    panels = [
        ("finality latency (ms)", [("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")], True),
        ("transfers/s", [("offered_per_s", "offered"), ("final_per_s", "final")], False),
        ("resident memory (MB)", [(f"{n}_rss_mb", n) for n in nodes], False),
        ("open files", [(f"{n}_open_files", n) for n in nodes], False),
        ("database on disk (MB)", [(f"{n}_db_mb", n) for n in nodes], False),
        ("CPU (cores)", [(f"{n}_cpu_cores", n) for n in nodes], False),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.3 * len(panels)), sharex=True)
    for ax, (label, series, log) in zip(axes, panels):
        highest = 0.0
        for col, name in series:
            ys = column(rows, col)
            highest = max([highest] + [y for y in ys if y is not None])
            ax.plot(minutes, [float("nan") if y is None else y for y in ys],
                    label=name, linewidth=1.2)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        else:
            # Room above the highest line for the legend; zero at the bottom, so a flat
            # line looks flat and growth is seen at its true scale.
            ax.set_ylim(bottom=0, top=max(highest * 1.3, 1.0))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=len(series))
    axes[-1].set_xlabel("minutes")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
