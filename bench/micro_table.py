#!/usr/bin/env python3
"""Prints awith's micro-benchmarks beside the peers of the micro suite of the peer benchmark
harness (SHARED_BENCH) in one table.

Usage: micro_table.py --awith A.json [--awith B.json ...]
                      [--asyncio X.tsv] [--uvloop Y.tsv] [--asio Z.tsv]

A*.json: Google Benchmark JSON (--benchmark_format=json; with repetitions, the median aggregate
is used). The peers' TSV lines are `key, median, min, max, unit, description` (run_micro.sh's raw
output). Counters of awith's benchmarks: ops_per_iteration (time per operation = time per
iteration / ops) and bytes_per_task (a memory row, in bytes). An awith benchmark is matched to a
peer key through KEYS below, or when its name without the BM_ prefix is the key itself.
Ratios are peer / awith: above 1 means awith is faster (or smaller).
"""
import argparse
import json
import sys

# awith benchmark -> the peers' key (asyncio_micro.py / asio_micro.cpp).
KEYS = {
    "BM_co_await_nested_task": "await_direct",
    "BM_create_task_await": "task_create_await",
    "BM_sleep0_switch": "yield_switch",
    "BM_call_soon": "call_soon",
    "BM_timer_arm_cancel": "timer_arm_cancel",
    "BM_pending_task_memory": "mem_pending_task_traced",
    "BM_pending_task_rss": "mem_pending_task_rss",
    "BM_taskgroup_child": "taskgroup_child",
    "BM_timeout_not_fired": "timeout_not_fired",
    "BM_async_with_class_acm": "acm_class_async_with",
    "BM_class_acm_by_hand": "acm_class_manual",
    "BM_generator_manager": "asynccontextmanager",
    "BM_exit_stack_entry": "exitstack_entry",
}

# awith's core performance targets (ns per operation, bytes for memory) and the Asio numbers
# measured on the same machine when the targets were set: on a loaded machine absolute numbers
# drift, so the target is also checked as a same-run ratio, asio / awith >= asio_quoted / target.
TARGETS = {
    "await_direct": (10, 14),
    "task_create_await": (60, 361),
    "yield_switch": (25, 121),
    "call_soon": (15, 33),
    "timer_arm_cancel": (40, 1588),
    "mem_pending_task_traced": (256, 1060),
}

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load_awith(paths):
    """{name: (value, unit)} per awith benchmark."""
    rows = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        by_name = {}
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                print(f"awith benchmark {b['name']} failed: {b.get('error_message', '')}", file=sys.stderr)
                continue
            name = b.get("run_name", b["name"]).split("/")[0]
            kind = b.get("run_type", "iteration")
            if kind == "aggregate" and b.get("aggregate_name") != "median":
                continue
            # A median aggregate wins over a single iteration run.
            if name in by_name and kind != "aggregate":
                continue
            by_name[name] = b
        for name, b in by_name.items():
            if "bytes_per_task" in b:
                rows[name] = (float(b["bytes_per_task"]), "bytes")
            else:
                ops = float(b.get("ops_per_iteration", 1.0))
                ns = float(b["real_time"]) * TO_NS[b.get("time_unit", "ns")]
                rows[name] = (ns / ops, "ns")
    return rows


def load_peer(path):
    """(order, {key: (median, unit, description)})"""
    order, rows = [], {}
    if not path:
        return order, rows
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6:
                continue
            key, median, _, _, unit, desc = parts[:6]
            order.append(key)
            rows[key] = (float(median), unit, desc)
    return order, rows


def fmt(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def ratio(peer, mine):
    if peer is None or mine is None or mine <= 0:
        return "—"
    return f"{peer / mine:.2f}" if peer / mine < 100 else f"{peer / mine:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--awith", action="append", default=[])
    ap.add_argument("--asyncio")
    ap.add_argument("--uvloop")
    ap.add_argument("--asio")
    args = ap.parse_args()

    mine = load_awith(args.awith)
    peers = {name: load_peer(getattr(args, name)) for name in ("asyncio", "uvloop", "asio")}
    key_of = {name: KEYS.get(name, name[3:] if name.startswith("BM_") else name) for name in mine}
    by_key = {key_of[name]: name for name in mine}

    order = []
    for name in ("asyncio", "asio", "uvloop"):
        for key in peers[name][0]:
            if key not in order:
                order.append(key)
    order += [key_of[name] for name in mine if key_of[name] not in order]

    print("| operation | unit | awith | asyncio | uvloop | asio | asyncio/awith | uvloop/awith | asio/awith | target (absolute; as a same-run ratio to asio) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in order:
        name = by_key.get(key)
        value, unit = mine.get(name, (None, None)) if name else (None, None)
        desc = None
        vals = {}
        for peer in ("asyncio", "uvloop", "asio"):
            row = peers[peer][1].get(key)
            vals[peer] = row[0] if row else None
            if row:
                unit = unit or row[1]
                desc = desc or row[2]
        if value is None and all(v is None for v in vals.values()):
            continue
        ids = f"`{key}` = `{name}`" if name else f"`{key}`"
        label = f"{desc} ({ids})" if desc else ids
        target_s = "—"
        if key in TARGETS and value is not None:
            target, asio_quoted = TARGETS[key]
            target_s = f"≤ {target}: {'ok' if value <= target else 'MISSED'}"
            if vals["asio"] is not None:
                needed = asio_quoted / target
                got = vals["asio"] / value
                target_s += f"; asio/awith ≥ {needed:.1f}: {'ok' if got >= needed else 'MISSED'}"
        print(f"| {label} | {unit} | {fmt(value) if name else 'not measured'} | {fmt(vals['asyncio'])} | "
              f"{fmt(vals['uvloop'])} | {fmt(vals['asio'])} | {ratio(vals['asyncio'], value)} | "
              f"{ratio(vals['uvloop'], value)} | {ratio(vals['asio'], value)} | {target_s} |")


if __name__ == "__main__":
    main()
