#!/usr/bin/env python3
"""Collects one bench/peers/run.sh run: agilenn's figures (agilenn-bench BM_Step and the
reference's own timing loop) and the peers' rows, for each configuration; prints the
table and writes bench/results/peers-<device>-<date>-<commit>.json."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from typing import Any

KINDS = ("second-order", "plain")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def git_commit(root: str) -> str:
    """HEAD's commit read from .git (no git process), or AGILENN_COMMIT; 'unknown' otherwise."""
    if os.environ.get("AGILENN_COMMIT"):
        return os.environ["AGILENN_COMMIT"]
    git = os.path.join(root, ".git")
    try:
        if os.path.isfile(git):  # a worktree: "gitdir: PATH"
            with open(git) as f:
                git = os.path.join(root, f.read().split(":", 1)[1].strip())
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        for base in (git, os.path.join(git, "..")):
            p = os.path.join(base, ref)
            if os.path.isfile(p):
                with open(p) as f:
                    return f.read().strip()[:12]
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                if line.strip().endswith(" " + ref):
                    return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


def describe_device(device: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    cores = os.cpu_count() or 0
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    d: dict[str, Any] = {"kind": device, "cpu": cpu, "cores": cores, "slug": f"cpu-{cores}core",
                         "load_avg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device == "cuda":
        name = next((r.get("gpu") for r in rows if r.get("gpu")), None)
        if name is None:
            try:
                import subprocess

                name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                      text=True, timeout=20).stdout.strip().splitlines()[0]
            except (OSError, IndexError, ValueError):
                name = "cuda"
        d["gpu"] = name
        d["slug"] = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return d


def agilenn_rows(d: str, config: dict[str, Any], device: str) -> list[dict[str, Any]]:
    rows = []
    bench = read_json(os.path.join(d, "bench.json"))
    name = f"BM_Step/{device}/{config['preset']['name']}/{config['batch']}"
    # Each step as planned (every value kept), then rematerialised as far as that goes.
    for suffix, (kind, arg) in [(s, k) for s in ("", "-remat") for k in zip(KINDS, ("agilenn", "plain"))]:
        arg += suffix
        loop = read_json(os.path.join(d, "f32", f"timing-{arg}.json"))
        for b in (bench or {}).get("benchmarks", []):
            if re.match(rf"{re.escape(name)}/{arg}(/|$)", b["name"]) and b.get("run_type", "iteration") == "iteration":
                scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
                rows.append({"system": "agilenn", "mode": "bench" + suffix, "kind": kind, "status": "ok", "reason": "",
                             "median_ms": b["real_time"] * scale, "images_per_s": b["images/s"],
                             "arena_bytes": b["arena_MiB"] * 2**20, "iterations": b["iterations"],
                             "benchmark": b["name"], "counters": {k: v for k, v in b.items() if k.endswith("_MiB")},
                             "step_memory_bytes": loop.get("step_memory_bytes") if loop else None,
                             "note": "agilenn-bench BM_Step (mean over its iterations); step memory as the loop row's"})
        if loop:
            rows.append({**loop, "system": "agilenn", "mode": "loop" + suffix, "kind": kind, "status": "ok", "reason": "",
                         "note": "agilenn-peer-reference --time (median), measured as the peers are"})
    return rows


def fmt_mib(b: Any) -> str:
    return f"{b / 2**20:.0f} MiB" if isinstance(b, (int, float)) and b is not None else "-"


def agreement_cell(r: dict[str, Any]) -> str:
    """f32: the gradients' relative L2 error against agilenn's and its tolerance; f64: the
    worst per-tensor error of this mode's code on the f64 case (or, for eager and jit
    modes, of the parent's check), against 1e-9."""
    if r["system"] == "agilenn":
        return "reference"
    parts = []
    a = r.get("agreement")
    if a and a.get("grad_tolerance"):
        parts.append(f"f32 L2 {a['gradient_l2']:.1e} {'ok' if a['ok'] else 'FAIL'}")
    own = r.get("agreement_f64")
    if own:
        parts.append(f"f64 {own['worst']:.0e} {'ok' if own['ok'] else 'FAIL'}")
    else:
        key = "second_order" if r["kind"] == "second-order" else "plain"
        for c in r.get("checks", []):
            if key in c and c[key].get("grad_tolerance") is None:
                parts.append(f"f64 {c[key]['worst']:.0e} {'ok' if c[key]['ok'] else 'FAIL'}")
    return "; ".join(parts) or "-"


def table(config: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    base = {}
    for kind in KINDS:
        ag = [r for r in rows if r["system"] == "agilenn" and r["kind"] == kind and r["status"] == "ok"]
        if ag:
            base[kind] = ag[0]  # agilenn-bench where it ran, else the reference's loop
    p = config["preset"]["name"]
    lines = [f"{p}, batch {config['batch']}, m = {config['ig']['m']} ({config['ig']['rule']}), {config['dtype']}, "
             f"{config['quantizer']} quantizer",
             "",
             "| system | mode | step | ms/step | images/s | × agilenn time | step memory | × agilenn memory "
             "| arena / XLA temp | agreement |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['system']} | {r['mode']} | {r['kind']} | {r['status']}: {r['reason']} "
                         f"| | | | | | {agreement_cell(r)} |")
            continue
        b = base.get(r["kind"])
        ratio = f"{r['median_ms'] / b['median_ms']:.2f}" if b else "-"
        mem = r.get("step_memory_bytes")
        bmem = b.get("step_memory_bytes") if b else None
        mratio = f"{mem / bmem:.2f}" if mem and bmem else "-"
        planned = fmt_mib(r.get("arena_bytes") or (r.get("xla_memory") or {}).get("temp_size_in_bytes"))
        lines.append(f"| {r['system']} | {r['mode']} | {r['kind']} | {r['median_ms']:.1f} | {r['images_per_s']:.0f} "
                     f"| {ratio} | {fmt_mib(mem)} | {mratio} | {planned} | {agreement_cell(r)} |")
    cost = []
    for system, mode in sorted({(r["system"], r["mode"]) for r in rows if r["status"] == "ok"}):
        t = {r["kind"]: r["median_ms"] for r in rows if r["system"] == system and r["mode"] == mode and r["status"] == "ok"}
        if all(k in t for k in KINDS):
            cost.append(f"{system} {mode} {t['second-order'] / t['plain']:.2f}×")
    if cost:
        lines += ["", "Second-order step / plain step (the cost of explainability-driven training): " + ", ".join(cost)]
    return lines


def f32_noise(d: str) -> float | None:
    """agilenn's own f32-vs-f64 relative L2 distance over all gradients: the f32 noise floor."""
    try:
        e32 = common.read_safetensors(os.path.join(d, "f32", "expected.safetensors"))
        e64 = common.read_safetensors(os.path.join(d, "f64", "expected.safetensors"))
    except OSError:
        return None
    return common.f32_noise(e32, e64)


def hoist_checks(config: dict[str, Any]) -> None:
    """Each peer repeats its first-pass checks in every row: keep them once per system in
    the configuration, and in the rows only their verdicts."""
    checks = config.setdefault("checks", {})
    for r in config["rows"]:
        if "checks" not in r:
            continue
        checks.setdefault(r["system"], r["checks"])
        r["checks"] = [{"dir": c["dir"], **{k: {f: v for f, v in c[k].items() if f != "errors"}
                                           for k in ("second_order", "plain") if k in c}} for c in r["checks"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True, help="run.sh's work directory (one sub-directory per configuration)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--root", required=True, help="repository root")
    ap.add_argument("--out", required=True, help="results directory")
    ap.add_argument("--peer-status", default="", help="name=exit-status pairs, comma-separated")
    args = ap.parse_args()

    configs = []
    all_rows: list[dict[str, Any]] = []
    for name in sorted(os.listdir(args.work)):
        d = os.path.join(args.work, name)
        config = read_json(os.path.join(d, "f32", "config.json"))
        if config is None:
            continue
        rows = agilenn_rows(d, config, args.device)
        for peer in ("torch", "jax"):
            rows += read_json(os.path.join(d, f"{peer}.json")) or [
                {"system": peer, "mode": "-", "kind": "-", "status": "error", "reason": "no result (see the log above)"}]
        systems = ["agilenn", "torch", "jax"]
        modes = ["bench", "loop", "bench-remat", "loop-remat", "eager", "compile", "compile-parts", "jit"]
        rows.sort(key=lambda r: (systems.index(r["system"]) if r["system"] in systems else 9,
                                 modes.index(r["mode"]) if r["mode"] in modes else 9, r["kind"] != "second-order"))
        summary = {k: config[k] for k in ("batch", "classes", "dtype", "quantizer", "ig", "rho", "lambda", "optimizer",
                                          "zero_point_table", "seed", "data_seed")}
        summary["preset"] = config["preset"]["name"]
        load = {k: (open(os.path.join(d, f"load-{k}")).read().split() if os.path.exists(os.path.join(d, f"load-{k}"))
                    else None) for k in ("start", "end")}
        summary["load_avg"] = load
        lines = table(config, rows)
        if load["start"]:
            lines[0] += f"; load average {' '.join(load['start'])} at the start, {' '.join(load['end'] or ['?'])} at the end"
        noise = f32_noise(d)
        if noise is not None:
            lines += ["", f"f32 noise floor (agilenn's own f32 gradients against its f64 gradients, relative L2): "
                          f"{noise:.1e}"]
        configs.append({"config": summary, "rows": rows, "table": lines, "agilenn_f32_vs_f64": noise})
        hoist_checks(configs[-1])
        all_rows += rows

    now = datetime.datetime.now(datetime.timezone.utc)
    commit = git_commit(args.root)
    device = describe_device(args.device, all_rows)
    result = {"device": device, "commit": commit, "date": now.isoformat(timespec="seconds"),
              "tolerances": {"f32": 1e-3, "f64": 1e-9, "measure": "max |peer − agilenn| / max |agilenn| per tensor"},
              "memory_measure": common.STEP_MEMORY,
              "configs": configs}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"peers-{device['slug']}-{now.date().isoformat()}-{commit}.json")
    # Configurations measured earlier the same day at the same commit on this device stay
    # in the file unless this run measured them again.
    earlier = read_json(path)
    if earlier:
        measured = {(c["config"]["preset"], c["config"]["batch"]) for c in configs}
        kept = [c for c in earlier.get("configs", []) if (c["config"]["preset"], c["config"]["batch"]) not in measured]
        result["configs"] = kept + configs
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\n## Peers on {device.get('gpu', device['cpu'])} ({device['cores']} cores), commit {commit}, "
          f"{now.date().isoformat()}\n")
    for c in configs:
        print("\n".join(c["table"]) + "\n")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
