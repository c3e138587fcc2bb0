"""Shared by the peers: reading agilenn-peer-reference's files, the agreement check,
timing and memory measurement, and the result rows the peers print and hand to report.py.

A case directory (written by agilenn-peer-reference) holds weights.safetensors,
batch.safetensors, expected.safetensors and config.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

EXIT_OK, EXIT_DISAGREE, EXIT_SKIPPED = 0, 1, 3

_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (the format is an 8-byte little-endian header
    length, a JSON header, then the raw data). Checks agilenn's CRC-32 when present."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = memoryview(raw)[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    if "crc32" in meta and f"{zlib.crc32(data) & 0xFFFFFFFF:08x}" != meta["crc32"]:
        raise ValueError(f"{path}: tensor data fails its CRC-32")
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=_DTYPES[e["dtype"]]).reshape(e["shape"]).copy()
    return out


@dataclass
class Case:
    dir: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    images: np.ndarray  # [B,H,W,3] NHWC
    labels: np.ndarray  # [B] int32
    expected: dict[str, np.ndarray]

    @property
    def preset(self) -> dict[str, Any]:
        return self.config["preset"]

    @property
    def dtype(self) -> str:
        return self.config["dtype"]

    def names(self, kind: str, prefix: str = "") -> list[str]:
        """Parameter ("parameter") or state ("state") names the step is fed, in agilenn's order."""
        return [p["name"] for p in self.config["params"] if p["kind"] == kind and p["name"].startswith(prefix)]


def load_case(d: str) -> Case:
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    batch = read_safetensors(os.path.join(d, "batch.safetensors"))
    return Case(d, config, read_safetensors(os.path.join(d, "weights.safetensors")), batch["images"], batch["labels"],
                read_safetensors(os.path.join(d, "expected.safetensors")))


def check_quadrature(config: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The IG points and weights of the config, checked against our own computation of the rule."""
    m, rule = config["ig"]["m"], config["ig"]["rule"]
    if rule == "left":
        a, w = [k / m for k in range(m)], [1 / m] * m
    elif rule == "right":
        a, w = [k / m for k in range(1, m + 1)], [1 / m] * m
    elif rule == "middle":
        a, w = [(k + 0.5) / m for k in range(m)], [1 / m] * m
    elif rule == "trapezoid":
        a = [k / (m - 1) for k in range(m)]
        w = [(0.5 if k in (0, m - 1) else 1.0) / (m - 1) for k in range(m)]
    elif rule == "gauss-legendre":
        x, wx = np.polynomial.legendre.leggauss(m)
        a, w = list((x + 1) / 2), list(wx / 2)
    else:
        raise ValueError(f"unknown IG rule {rule!r}")
    if not (np.allclose(a, config["ig"]["alphas"], atol=1e-12) and np.allclose(w, config["ig"]["weights"], atol=1e-12)):
        raise ValueError(f"IG rule {rule} m={m}: config points {config['ig']} differ from ours {a}, {w}")
    return config["ig"]["alphas"], config["ig"]["weights"]


# ---- agreement ----------------------------------------------------------------------

# What "agrees" means, per precision.
#
# f64 (the proof that both compute the same function): every tensor — loss, metrics,
# gradients, BN moving statistics, the zero-point table — to 1e-9 of its own largest
# |agilenn value|. Both sides compute in double; what remains is summation order, ~1e-16
# per op grown through ~100 chained kernels and a second-order sweep (measured: 1e-12 to
# 1e-10); any formula difference shows at 1e-3 and above.
#
# f32 (the step that is timed): float32 rounding differs between any two implementations
# (summation order, fused kernels), and the step contains discontinuities — ReLU6 masks at
# 0 and 6, the straight-through quantizer's nearest centroid — that an element within
# rounding of a boundary crosses on one side and not on the other. One such element in a
# 4×4 map at batch 8 is 1/128 of that channel's batch-norm statistics: on the paper preset
# agilenn's own f32 gradients differ from its f64 gradients by about 1% (relative L2 over
# all gradients) and by up to tens of percent on single small tensors, with either
# quantizer; on the tiny preset torch.compile's f32 gradients differ from agilenn's by
# 2e-3 for the same reason, while eager PyTorch and JAX agree to 1e-6. An f32 comparison
# therefore cannot tell a dropped term from a flipped mask, and is a sanity check only
# (wrong layouts, reduced precision, a missing loss term all show at 1e-1 and above): the
# gradients' relative L2 error against agilenn's f32 gradients within the larger of
# F32_GRAD_MIN and F32_GRAD_FACTOR × the f32 noise floor (agilenn's own f32-vs-f64 distance
# on the same case, when the f64 case is at hand; else F32_GRAD_DEFAULT); loss, metrics
# and BN statistics to F32_SCALAR of their magnitude. Every timed code path is also run
# on the f64 case, which is the check that decides.
#
# Some gradients are zero in exact arithmetic (a bias or beta followed, through linear
# ops only, by a train-mode batch norm, which removes any per-channel shift): both sides
# then hold rounding noise, and noise over noise is O(1). So a gradient's per-tensor error
# is taken against at least GRADIENT_FLOOR × the largest gradient element of the step.
F64_TOLERANCE = 1e-9
F32_SCALAR = 1e-3
F32_GRAD_FACTOR, F32_GRAD_MIN, F32_GRAD_DEFAULT = 4.0, 1e-2, 5e-2
GRADIENT_FLOOR = 1e-3


def _gradient_l2(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    x = np.concatenate([np.ravel(got[n]).astype(np.float64) for n in sorted(want)])
    y = np.concatenate([np.ravel(want[n]).astype(np.float64) for n in sorted(want)])
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def f32_noise(e32: dict[str, np.ndarray], e64: dict[str, np.ndarray]) -> float:
    """agilenn's own f32-vs-f64 relative L2 distance over all gradients (worst of the
    second-order and the plain step)."""
    return max(_gradient_l2({n: e32[n] for n in e64 if n.startswith(p + "grad/")},
                            {n: e64[n] for n in e64 if n.startswith(p + "grad/")}) for p in ("", "plain/"))


def f32_grad_tolerance(main: "Case", others: list["Case"]) -> tuple[float, float | None]:
    """The f32 gradient tolerance for `main` and the noise floor it came from (None: no
    matching f64 case, the default applies)."""
    keys = ("batch", "classes", "quantizer", "ig", "seed", "data_seed", "zero_point_table", "perturbed_constants")
    for o in others:
        if o.dtype == "f64" and o.preset["name"] == main.preset["name"] and all(o.config[k] == main.config[k] for k in keys):
            noise = f32_noise(main.expected, o.expected)
            return max(F32_GRAD_MIN, F32_GRAD_FACTOR * noise), noise
    return F32_GRAD_DEFAULT, None


@dataclass
class Agreement:
    """f64: every tensor within `tolerance`. f32 (grad_tolerance set): loss, metrics and
    states within `tolerance`, the gradients' relative L2 error within grad_tolerance."""

    tolerance: float
    grad_tolerance: float | None = None
    noise: float | None = None  # f32: agilenn's own f32-vs-f64 distance, for the record
    diffs: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (max |got − want|, max |want|)
    grads: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, name: str, got: Any, want: np.ndarray) -> None:
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            raise ValueError(f"{name}: shape {got.shape}, agilenn's {want.shape}")
        if want.size == 0:
            self.diffs[name] = (0.0, 0.0)
        else:
            self.diffs[name] = (float(np.max(np.abs(got - want))), float(np.max(np.abs(want))))
        if name.startswith("grad/"):
            self.grads[name] = (got, want)

    @property
    def errors(self) -> dict[str, float]:
        """Per tensor: max |got − want| / max |want| (gradients: at least GRADIENT_FLOOR × the largest)."""
        g = max((m for n, (_, m) in self.diffs.items() if n.startswith("grad/")), default=0.0)
        out = {}
        for n, (d, m) in self.diffs.items():
            scale = max(m, GRADIENT_FLOOR * g) if n.startswith("grad/") else m
            out[n] = d / scale if scale > 0 else d
        return out

    @property
    def gradient_l2(self) -> float:
        if not self.grads:
            return 0.0
        return _gradient_l2({n: g for n, (g, _) in self.grads.items()}, {n: w for n, (_, w) in self.grads.items()})

    def judged(self) -> dict[str, tuple[float, float]]:
        """name -> (error, its tolerance) for everything the verdict rests on."""
        e = self.errors
        if self.grad_tolerance is None:
            return {n: (v, self.tolerance) for n, v in e.items()}
        out = {n: (v, self.tolerance) for n, v in e.items() if not n.startswith("grad/")}
        out["gradients (relative L2, all)"] = (self.gradient_l2, self.grad_tolerance)
        return out

    @property
    def ok(self) -> bool:
        return all(err <= tol for err, tol in self.judged().values())

    @property
    def worst(self) -> tuple[str, float]:
        """The judged quantity closest to (or furthest over) its tolerance, and its error."""
        j = self.judged()
        name = max(j, key=lambda k: j[k][0] / j[k][1])
        return name, j[name][0]

    def summary(self) -> str:
        if self.grad_tolerance is None:
            name, err = self.worst
            return f"worst {err:.1e} ({name}), tolerance {self.tolerance:.0e}"
        e = self.errors
        worst_t = max((n for n in e if n.startswith("grad/")), key=lambda n: e[n], default="-")
        others = {n: v for n, v in e.items() if not n.startswith("grad/")}
        worst_o = max(others, key=lambda n: others[n])
        noise = f", agilenn f32 vs f64 {self.noise:.1e}" if self.noise is not None else ""
        return (f"gradients L2 {self.gradient_l2:.1e} (tolerance {self.grad_tolerance:.1e}{noise}); "
                f"loss/metrics/states worst {others[worst_o]:.1e} ({worst_o}, tolerance {self.tolerance:.0e}); "
                f"per-tensor gradient max-norm worst {e.get(worst_t, 0):.1e} ({worst_t}, not judged)")

    def print(self, title: str, verbose: bool) -> None:
        j = self.judged()
        bad = {k: v for k, v in j.items() if v[0] > v[1]}
        print(f"{title}: {len(self.errors)} tensors, {self.summary()}: {'OK' if self.ok else f'FAILED ({len(bad)} over)'}")
        if verbose or bad:
            for k, err in sorted(self.errors.items(), key=lambda kv: -kv[1]):
                mark = "   <-- over tolerance" if k in bad else ("   (not judged: f32)" if k not in j else "")
                print(f"  {err:9.2e}  {k}{mark}")
            if self.grad_tolerance is not None:
                print(f"  {self.gradient_l2:9.2e}  gradients (relative L2, all){'   <-- over tolerance' if bad else ''}")

    def to_json(self) -> dict[str, Any]:
        name, err = self.worst
        return {"ok": self.ok, "tolerance": self.tolerance, "grad_tolerance": self.grad_tolerance,
                "f32_noise": self.noise, "gradient_floor": GRADIENT_FLOOR, "worst": err, "worst_what": name,
                "gradient_l2": self.gradient_l2, "errors": self.errors}


def agreement_for(case: "Case", grad_tolerance: float | None, noise: float | None = None,
                  tolerance: float | None = None) -> Agreement:
    if case.dtype == "f64":
        return Agreement(tolerance if tolerance is not None else F64_TOLERANCE)
    return Agreement(F32_SCALAR, grad_tolerance if grad_tolerance is not None else F32_GRAD_DEFAULT, noise)


# ---- timing and memory ------------------------------------------------------------------


# Step memory, the same quantity for every system: the peak bytes the step allocates
# beyond the state that lives across steps (parameters, BN statistics, optimizer momenta,
# the batch) — intermediates plus the step's outputs (gradients, loss, metrics, new BN
# statistics). agilenn: its planned arena + its outputs. PyTorch: the peak of its
# allocator's live bytes during one step above the start (CPU: from the profiler's
# allocation events; CUDA: max_memory_allocated). JAX: XLA's buffer assignment for the
# jitted step, temporaries + outputs not aliased to donated inputs. Process-level figures
# (resident set) are not comparable: they count libraries, compiled code and allocator
# caches, which differ by framework far more than the step does.
STEP_MEMORY = "peak bytes allocated by one step beyond parameters, BN statistics, momenta and the batch"


def time_steps(step: Callable[[], None], sync: Callable[[], None], warmup: int, iters: int) -> dict[str, Any]:
    """Median of `iters` timed steps after `warmup`."""
    for _ in range(warmup):
        step()
    sync()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"step_ms": ms, "median_ms": statistics.median(ms)}


# ---- command line and results -----------------------------------------------------------


def peer_args(description: str, modes: list[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dir", required=True, help="case directory from agilenn-peer-reference")
    ap.add_argument("--check-dir", action="append", default=[],
                    help="further case directories to check only (e.g. an f64 case); repeatable")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--modes", default=",".join(modes), help=f"comma-separated, of {','.join(modes)}")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-update", action="store_true", help="time the step without the SGDW update")
    ap.add_argument("--tolerance", type=float, default=None, help="override the f64 per-tensor tolerance")
    ap.add_argument("--grad-tolerance", type=float, default=None,
                    help="override the f32 gradient tolerance (default: from the f64 case's noise floor)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--verbose", action="store_true", help="print every tensor's error")
    ap.add_argument("--only-mode", help=argparse.SUPPRESS)  # internal: time one mode in this process
    return ap


def row(system: str, mode: str, kind: str, batch: int, status: str = "ok", reason: str = "",
        timing: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"system": system, "mode": mode, "kind": kind, "status": status, "reason": reason}
    if timing:
        r.update(timing)
        r["images_per_s"] = 1e3 * batch / timing["median_ms"]
    r.update(extra)
    return r


def run_modes_isolated(system: str, script: str, args: argparse.Namespace, modes: list[str]) -> list[dict[str, Any]]:
    """Times each mode in a fresh process of `script`, so one mode's memory (allocator
    caches, compiled code) does not count against the next."""
    import subprocess
    import tempfile

    rows = []
    for mode in modes:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, script, "--dir", args.dir, "--device", args.device, "--warmup", str(args.warmup),
                   "--iters", str(args.iters), "--only-mode", mode, "--json", tmp.name]
            for d in args.check_dir:
                cmd += ["--check-dir", d]
            if args.no_update:
                cmd.append("--no-update")
            if args.grad_tolerance is not None:
                cmd += ["--grad-tolerance", repr(args.grad_tolerance)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(p.stdout)
            try:
                with open(tmp.name) as f:
                    got = json.load(f)
            except (OSError, ValueError):
                got = []
            if p.returncode != 0 or not got:
                lines = [ln for ln in p.stderr.strip().splitlines() if "Error" in ln or "error:" in ln.lower()]
                tail = (lines or p.stderr.strip().splitlines() or ["no output"])[-1]
                got = [{"system": system, "mode": mode.removesuffix("-plain"),
                        "kind": "plain" if mode.endswith("-plain") else "second-order", "status": "error",
                        "reason": f"exit status {p.returncode}: {tail[:300]}"}]
                sys.stderr.write(p.stderr[-4000:])
            rows.extend(got)
    return rows


def peer_main(system: str, script: str, args: argparse.Namespace,
              check_case: Callable[[Case, Callable[[Case], Agreement], argparse.Namespace], list[Agreement]],
              run_mode: Callable[[argparse.Namespace, str], list[dict[str, Any]]]) -> int:
    """The peers' shared driver: check every case (the timed f32 case and its f64
    companions) with eager/jit code, then time each mode in a process of its own."""
    if args.only_mode:
        write_rows(args.json, run_mode(args, args.only_mode))
        return EXIT_OK
    cases = [load_case(d) for d in [args.dir, *args.check_dir]]
    tolerances = {c.dir: f32_grad_tolerance(c, cases) for c in cases if c.dtype == "f32"}
    if args.grad_tolerance is None:
        args.grad_tolerance = tolerances.get(args.dir, (None, None))[0]  # handed to the timed modes

    def make(c: Case) -> Agreement:
        tol, noise = tolerances.get(c.dir, (None, None))
        return agreement_for(c, args.grad_tolerance if c.dir == args.dir else tol, noise, args.tolerance)

    checks = [(c.dir, check_case(c, make, args)) for c in cases]
    check_json = [{"dir": d, "second_order": a[0].to_json(), "plain": a[1].to_json()} for d, a in checks]
    if not all(a.ok for _, ags in checks for a in ags):
        write_rows(args.json, [row(system, "-", "-", 0, "disagree", "agreement failed", checks=check_json)])
        return EXIT_DISAGREE
    rows = run_modes_isolated(system, script, args, [m for m in args.modes.split(",") if m])
    for r in rows:
        r["checks"] = check_json
    print_rows(rows)
    write_rows(args.json, rows)
    return EXIT_DISAGREE if any(r["status"] == "disagree" for r in rows) else EXIT_OK


def write_rows(path: str | None, rows: list[dict[str, Any]]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r["status"] == "ok":
            mem = r.get("step_memory_bytes")
            mem_s = f"{mem / 2**20:7.1f} MiB" if mem is not None else "      ?"
            print(f"  {r['system']:6} {r['mode']:8} {r['kind']:13} {r['median_ms']:9.2f} ms  "
                  f"{r['images_per_s']:9.1f} img/s  {mem_s}")
        else:
            print(f"  {r['system']:6} {r['mode']:8} {r['kind']:13} {r['status']}: {r['reason']}")
