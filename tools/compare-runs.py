#!/usr/bin/env python3
"""Compares two agilenn-train runs of the same configuration on different backends (the
CPU's as the reference): the per-step training loss from metrics.jsonl and every tensor of
latest.safetensors. Prints one line per step and per tensor group, then a verdict line.

Exit 0 when the GPU run tracks the CPU's: every step's loss within --loss-rtol of the CPU's
over the first --steps steps, and every tensor's largest difference within --tensor-rtol of
its largest magnitude (the bounds of tests/test_gpu_train.cpp); 1 otherwise; 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def losses(run: str) -> dict[int, float]:
    path = os.path.join(run, "metrics.jsonl")
    out: dict[int, float] = {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                out[int(rec["step"])] = float(rec["loss"])
    if not out:
        raise ValueError(f"{path}: no training-loss records")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("cpu_run")
    ap.add_argument("gpu_run")
    ap.add_argument("--loss-rtol", type=float, default=5e-3)
    ap.add_argument("--tensor-rtol", type=float, default=1e-2)
    ap.add_argument("--steps", type=int, default=10, help="steps held to --loss-rtol (later ones are reported)")
    a = ap.parse_args()
    try:
        cpu, gpu = losses(a.cpu_run), losses(a.gpu_run)
    except (OSError, ValueError) as e:
        print(f"compare-runs: {e}", file=sys.stderr)
        return 2
    ok = True
    worst_loss = 0.0
    for step in sorted(cpu):
        if step not in gpu:
            print(f"step {step}: missing from the GPU run")
            ok = False
            continue
        rel = abs(gpu[step] - cpu[step]) / max(abs(cpu[step]), 1e-12)
        held = step <= a.steps
        if held:
            worst_loss = max(worst_loss, rel)
            ok = ok and rel <= a.loss_rtol
        print(f"step {step:4d}: loss cpu {cpu[step]:.6f} gpu {gpu[step]:.6f} rel {rel:.2e}{'' if held else ' (reported)'}")

    worst_tensor, worst_name = 0.0, ""
    try:
        from safetensors.numpy import load_file
        import numpy as np

        tc = load_file(os.path.join(a.cpu_run, "latest.safetensors"))
        tg = load_file(os.path.join(a.gpu_run, "latest.safetensors"))
        if set(tc) != set(tg):
            print(f"checkpoints hold different tensors: {sorted(set(tc) ^ set(tg))[:5]}")
            ok = False
        for name in sorted(set(tc) & set(tg)):
            x, y = tc[name].astype(np.float64), tg[name].astype(np.float64)
            if x.shape != y.shape:
                print(f"{name}: shape {x.shape} vs {y.shape}")
                ok = False
                continue
            rel = float(np.max(np.abs(x - y), initial=0.0)) / (float(np.max(np.abs(x), initial=0.0)) + 1e-6)
            if rel > worst_tensor:
                worst_tensor, worst_name = rel, name
        ok = ok and worst_tensor <= a.tensor_rtol
        checkpoint = f"worst tensor {worst_name} {worst_tensor:.2e} (bound {a.tensor_rtol:g}) over {len(tc)} tensors"
    except ImportError as e:
        checkpoint = f"checkpoint not compared ({e})"
    except OSError as e:
        checkpoint = f"checkpoint not compared ({e})"
        ok = False
    print(f"verdict: {'ok' if ok else 'FAIL'}: {len(cpu)} steps, worst loss rel {worst_loss:.2e} over the first "
          f"{a.steps} (bound {a.loss_rtol:g}); {checkpoint}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
