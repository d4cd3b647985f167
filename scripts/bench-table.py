#!/usr/bin/env python3
"""Markdown table of criterion results: median time and throughput per
benchmark, read from target/criterion/**/new/{estimates,benchmark}.json.
Usage: scripts/bench-table.py [GROUP_PREFIX...]"""
import json, pathlib, sys

root = pathlib.Path("target/criterion")
prefixes = sys.argv[1:]
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    name = meta["full_id"]
    if prefixes and not any(name.startswith(p) for p in prefixes):
        continue
    e = json.loads(est.read_text())["median"]
    ns, lo, hi = e["point_estimate"], e["confidence_interval"]["lower_bound"], e["confidence_interval"]["upper_bound"]
    tp = meta.get("throughput") or {}
    def t(v):
        return f"{v/1e6:.2f} ms" if v >= 1e6 else f"{v/1e3:.2f} µs" if v >= 1e3 else f"{v:.1f} ns"
    if "Bytes" in tp:
        b = tp["Bytes"]; rate = b / (ns / 1e9)
        thr = f"{rate/2**30:.2f} GiB/s" if rate >= 2**30 else f"{rate/2**20:.1f} MiB/s"
        inp = f"{b} B"
    elif "Elements" in tp:
        n = tp["Elements"]; thr = f"{n/(ns/1e9)/1e6:.2f} M items/s"; inp = f"{n} items"
    else:
        thr, inp = "", ""
    rows.append(f"| `{name}` | {inp} | {t(ns)} | {t(lo)} – {t(hi)} | {thr} |")
print("| Benchmark | Input per iteration | Median | 95% CI of median | Throughput at median |")
print("|---|---|---|---|---|")
print("\n".join(rows))
