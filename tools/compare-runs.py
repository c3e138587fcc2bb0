#!/usr/bin/env python3
"""Compares two agilenn-train runs of the same configuration on different backends (the
CPU's as the reference): the per-step training loss from metrics.jsonl and the tensors of
latest.safetensors. Prints one line per step, then a verdict line.

What is held (exit 1 otherwise; 2 on bad input): the first step's loss within --loss-rtol
(both runs start from the same weights and batch), every loss finite, and the same
checkpoint format (tensor names, shapes, dtypes). What is only reported: later losses and
the tensors' differences. The training map amplifies rounding (tests/training_parity.h):
two CPU runs one float32 rounding apart differ by 5e-3 in the loss after 3 steps, so
free-running runs are not expected to agree; tests/test_gpu_train.cpp holds every step
from a shared state instead.
"""
from __future__ import annotations

import argparse
import json
import math
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
    ap.add_argument("--loss-rtol", type=float, default=1e-4, help="bound on the first step's loss")
    a = ap.parse_args()
    try:
        cpu, gpu = losses(a.cpu_run), losses(a.gpu_run)
    except (OSError, ValueError) as e:
        print(f"compare-runs: {e}", file=sys.stderr)
        return 2
    ok = True
    first = min(cpu)
    for step in sorted(cpu):
        if step not in gpu:
            print(f"step {step}: missing from the GPU run")
            ok = False
            continue
        rel = abs(gpu[step] - cpu[step]) / max(abs(cpu[step]), 1e-12)
        held = step == first
        if held:
            ok = ok and rel <= a.loss_rtol
        print(f"step {step:4d}: loss cpu {cpu[step]:.6f} gpu {gpu[step]:.6f} rel {rel:.2e}{' (held)' if held else ''}")
    finite = all(math.isfinite(v) for v in gpu.values())
    ok = ok and finite
    tail = sorted(cpu)[-max(1, len(cpu) // 3):]
    mean_cpu = sum(cpu[s] for s in tail) / len(tail)
    mean_gpu = sum(gpu.get(s, float("nan")) for s in tail) / len(tail)

    try:
        from safetensors.numpy import load_file
        import numpy as np

        tc = load_file(os.path.join(a.cpu_run, "latest.safetensors"))
        tg = load_file(os.path.join(a.gpu_run, "latest.safetensors"))
        same = set(tc) == set(tg) and all(tc[n].shape == tg[n].shape and tc[n].dtype == tg[n].dtype for n in tc)
        ok = ok and same
        worst, worst_name = 0.0, ""
        for name in sorted(set(tc) & set(tg)):
            x, y = tc[name].astype(np.float64), tg[name].astype(np.float64)
            if x.shape != y.shape:
                continue
            rel = float(np.max(np.abs(x - y), initial=0.0)) / (float(np.max(np.abs(x), initial=0.0)) + 1e-6)
            if rel > worst:
                worst, worst_name = rel, name
        checkpoint = (f"checkpoint format {'same' if same else 'DIFFERENT'} ({len(tc)} tensors; "
                      f"largest difference {worst:.1e} in {worst_name}, reported)")
    except ImportError as e:
        checkpoint = f"checkpoint not compared ({e})"
    except OSError as e:
        checkpoint = f"checkpoint not read ({e})"
        ok = False
    first_rel = abs(gpu.get(first, float("nan")) - cpu[first]) / max(abs(cpu[first]), 1e-12)
    print(f"verdict: {'ok' if ok else 'FAIL'}: first loss rel {first_rel:.1e} (bound {a.loss_rtol:g}); "
          f"{'all finite' if finite else 'NON-FINITE losses'}; mean loss of the last {len(tail)} steps "
          f"cpu {mean_cpu:.3f} gpu {mean_gpu:.3f}; {checkpoint}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
