#!/usr/bin/env python3
"""The AgileNN training step in PyTorch: the peer of agilenn's BM_Step.

Reads a case written by agilenn-peer-reference (weights, one batch, agilenn's loss,
metrics, gradients and BN statistics), builds the same model and loss, checks that its
loss, metrics, every parameter gradient and every BN moving statistic agree with
agilenn's, then times the step: forward, integrated gradients through the frozen
reference net with create_graph=True, the backward to the parameters (a second-order
sweep) and the SGDW update, as BM_Step does; and the same model's plain first-order step.

Modes (each timed in a fresh process, so one mode's compilation and caches do not weigh
on the next): eager; compile, torch.compile of the whole loss; compile-parts,
torch.compile of the first-order part (FE, LP, quantizer, RP) with the reference net and
its double backward eager; and both kinds for the plain step. Every compiled mode's code
is also checked on the f64 case: torch.compile of the whole second-order loss returns
gradients without the double-backward term (equal to the eager step's with the IG
gradients detached), and its row says so instead of a time. Exit status: 0 all checks
passed, 1 a disagreement, 3 PyTorch (or the device) is not available (skipped).

The α = 0 IG point: agilenn's step takes its gradient from a per-class table computed
once from the frozen reference net (DESIGN.md §1: with a zero baseline it depends on the
label alone). The peer does the same, computing its own table with PyTorch once before
timing (and checking it against agilenn's), so both sides time the same computation.
With a case written with --no-table, the peer runs the α = 0 point through the net too.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agilenn_model as model  # noqa: E402
import common  # noqa: E402
import numpy as np  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # PyTorch is optional: the run skips this peer
    torch = None  # type: ignore[assignment]
    _IMPORT_ERROR = str(e)

MODES = ["eager", "eager-plain", "compile", "compile-parts", "compile-plain"]


# ---- layouts: agilenn is NHWC with HWIO filters and [in,out] dense weights ----------------

def to_torch_layout(a: np.ndarray) -> np.ndarray:
    if a.ndim == 4:
        return a.transpose(3, 2, 0, 1)  # HWIO -> OIHW ([KH,KW,1,C] depthwise -> [C,1,KH,KW])
    if a.ndim == 2:
        return a.T  # [in,out] -> [out,in] for F.linear
    return a


def from_torch_layout(a: np.ndarray) -> np.ndarray:
    if a.ndim == 4:
        return a.transpose(2, 3, 1, 0)
    if a.ndim == 2:
        return a.T
    return a


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same": out = ceil(in/stride), the odd pixel of padding after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class TorchLayers:
    """agilenn_model.Layers for PyTorch, NCHW. BN moving statistics in `states` are updated
    in place by train-mode batch norm, as nn.BatchNorm2d does."""

    def __init__(self, values: dict[str, Any], states: dict[str, Any]) -> None:
        self.values, self.states, self.used = values, states, set()

    def param(self, name: str) -> Any:
        self.used.add(name)
        return self.values[name]

    def conv(self, name: str, x: Any, stride: int, depthwise: bool = False, bias: bool = False) -> Any:
        w = self.param(name + ".weight")
        b = self.param(name + ".bias") if bias else None
        (t, bo), (l, r) = same_pads(x.shape[2], w.shape[2], stride), same_pads(x.shape[3], w.shape[3], stride)
        groups = x.shape[1] if depthwise else 1
        if t == bo and l == r:
            return F.conv2d(x, w, b, stride, (t, l), 1, groups)
        return F.conv2d(F.pad(x, (l, r, t, bo)), w, b, stride, 0, 1, groups)

    def bn(self, name: str, x: Any, momentum: float, eps: float, train: bool) -> Any:
        mean, var = self.states[name + ".moving_mean"], self.states[name + ".moving_var"]
        self.used.update((name + ".moving_mean", name + ".moving_var"))
        return F.batch_norm(x, mean, var, self.param(name + ".gamma"), self.param(name + ".beta"), training=train,
                            momentum=1.0 - momentum, eps=eps)

    def dense(self, name: str, x: Any) -> Any:
        return F.linear(x, self.param(name + ".weight"), self.param(name + ".bias"))

    def relu6(self, x: Any) -> Any:
        return F.relu6(x)

    def silu(self, x: Any) -> Any:
        return F.silu(x)

    def sigmoid(self, x: Any) -> Any:
        return torch.sigmoid(x)

    def pool(self, x: Any, keepdims: bool = False) -> Any:
        return x.mean((2, 3), keepdim=keepdims)

    def channels(self, x: Any) -> int:
        return x.shape[1]

    def slice_channels(self, x: Any, begin: int, end: int) -> Any:
        return x[:, begin:end]

    def quantize(self, x: Any, centroids: Any, soft: bool) -> Any:
        d = (x.unsqueeze(-1) - centroids).square()
        s = (torch.softmax(-d, -1) * centroids).sum(-1)
        if soft:
            return s
        return s + (centroids[d.argmin(-1)] - s).detach()  # hard forward, soft gradients

    def mix(self, local: Any, remote: Any, v: Any) -> Any:
        w = torch.softmax(v, 0)
        return local * w[0] + remote * w[1]


class TorchStep:
    def __init__(self, case: common.Case, device: str) -> None:
        self.case, self.p, cfg = case, case.preset, case.config
        self.device = torch.device(device)
        self.dtype = torch.float64 if case.dtype == "f64" else torch.float32
        self.alphas, self.weights = common.check_quadrature(cfg)
        trainable = set(cfg["trainable"])

        def t(a: np.ndarray, grad: bool = False) -> Any:
            x = torch.tensor(np.ascontiguousarray(to_torch_layout(a)), dtype=self.dtype, device=self.device)
            return x.requires_grad_(grad)

        self.params = {n: t(case.weights[n], n in trainable) for n in case.names("parameter")}
        self.states = {n: t(case.weights[n]) for n in case.names("state")}
        self.images = torch.tensor(case.images.transpose(0, 3, 1, 2).copy(), dtype=self.dtype, device=self.device)
        self.labels = torch.tensor(case.labels, dtype=torch.long, device=self.device)
        self.table = self.zero_point_table() if cfg["zero_point_table"] else None
        self.momenta: dict[str, Any] = {}
        self.forward_fn: Callable[[dict[str, Any]], tuple[Any, Any]] = self.forward

    def trainable(self, attribution: bool) -> list[str]:
        return self.case.config["trainable" if attribution else "plain_trainable"]

    def reference_ce(self, features: Any, labels: Any) -> Any:
        """Σ over rows of the reference net's cross-entropy (states read only: eval mode)."""
        logits = model.reference_body(TorchLayers(self.params, self.states), features, self.p)
        return F.cross_entropy(logits, labels, reduction="sum")

    def zero_point_table(self) -> Any:
        """Per-class ∂ce(E(F), c)/∂F at F = 0: [classes, C, h, w]."""
        p, classes = self.p, self.case.config["classes"]
        side = -(-p["input_size"] // p["fe_stride"])
        zeros = torch.zeros(classes, p["feature_channels"], side, side, dtype=self.dtype, device=self.device,
                            requires_grad=True)
        labels = torch.arange(classes, device=self.device)
        return torch.autograd.grad(self.reference_ce(zeros, labels), zeros)[0].detach()

    def integrated_gradients(self, f: Any) -> Any:
        """A = Σ_k w_k ∂CE_k/∂F_k, CE_k the batch mean at F_k = α_k f; the moving points in
        one batch, differentiable (create_graph=True) so the loss can be differentiated again."""
        b = f.shape[0]
        a, moving, moving_w = None, [], []
        for alpha, w in zip(self.alphas, self.weights):
            if alpha == 0.0:
                if self.table is not None:
                    term = self.table[self.labels] * (w / b)
                else:  # a point independent of θ: first order only
                    z = torch.zeros_like(f, requires_grad=True)
                    term = torch.autograd.grad(self.reference_ce(z, self.labels) / b, z)[0] * w
                a = term if a is None else a + term
            else:
                moving.append(f * alpha)
                moving_w.append(w)
        if moving:
            points = torch.cat(moving)
            ce = self.reference_ce(points, self.labels.repeat(len(moving))) / b
            g = torch.autograd.grad(ce, points, create_graph=True)[0]
            for k, w in enumerate(moving_w):
                term = g[k * b:(k + 1) * b] * w
                a = term if a is None else a + term
        return a

    def forward(self, states: dict[str, Any]) -> tuple[Any, Any]:
        """Features f and logits: FE, LP, quantizer, RP, mix (first-order only)."""
        out = model.forward(TorchLayers(self.params, states), self.images, self.p, self.case.config["quantizer"] == "soft")
        return out.features, out.logits

    def loss(self, attribution: bool, states: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        cfg, p = self.case.config, self.p
        f, logits = self.forward_fn(states)
        ce = F.cross_entropy(logits, self.labels)
        metrics = {"ce": ce, "correct": (logits.argmax(1) == self.labels).sum().to(self.dtype)}
        if not attribution:
            return ce, metrics
        a, k = self.integrated_gradients(f), p["local_channels"]
        importance = (f * a).abs()  # I [B,C,h,w]
        per_channel = importance.sum((2, 3))  # P [B,C]
        local, total = per_channel[:, :k].sum(1), per_channel.sum(1)
        spread = importance[:, k:].amax((1, 2, 3)) - importance[:, :k].amin((1, 2, 3))
        guarded = total + 1e-9  # both ratios guarded, as agilenn's (an all-zero sample: no 0/0)
        s = local / guarded
        skew_loss, disorder_loss = F.relu(cfg["rho"] - s).mean(), F.relu(spread / guarded).mean()
        metrics.update(skew_loss=skew_loss, disorder_loss=disorder_loss, skewness=s.mean())
        lam = cfg["lambda"]
        return ce * lam + (skew_loss + disorder_loss) * (1 - lam), metrics

    def gradients(self, attribution: bool, loss_fn: Callable[..., Any]) -> tuple[Any, dict[str, Any], dict[str, Any],
                                                                                 dict[str, np.ndarray]]:
        """Loss, metrics, new BN statistics and gradients (agilenn layouts) of one step on
        copies of the BN statistics."""
        states = {n: s.clone() for n, s in self.states.items()}
        loss, metrics = loss_fn(attribution, states)
        names = self.trainable(attribution)
        grads = torch.autograd.grad(loss, [self.params[n] for n in names])
        return loss, metrics, states, {n: from_torch_layout(g.detach().cpu().numpy()) for n, g in zip(names, grads)}

    def check(self, attribution: bool, loss_fn: Callable[..., Any], ag: common.Agreement) -> tuple[common.Agreement,
                                                                                                 dict[str, np.ndarray]]:
        """One step compared with agilenn's expected outputs (into `ag`); also returns the gradients."""
        exp, pre = self.case.expected, "" if attribution else "plain/"
        loss, metrics, states, grads = self.gradients(attribution, loss_fn)
        ag.add("loss", loss.detach().cpu().numpy(), exp[pre + "loss"])
        for n, v in metrics.items():
            ag.add("metric/" + n, v.detach().cpu().numpy(), exp[pre + "metric/" + n])
        for n, g in grads.items():
            ag.add("grad/" + n, g, exp[pre + "grad/" + n])
        for key in exp:
            if key.startswith(pre + "state/"):
                n = key[len(pre + "state/"):]
                ag.add("state/" + n, states[n].cpu().numpy(), exp[key])
        if attribution and self.table is not None:
            ag.add("ig.zero_point_grads", self.table.permute(0, 2, 3, 1).cpu().numpy(),
                   exp[self.case.config["zero_point_table"]])
        return ag, grads

    def first_order_only(self, grads: dict[str, np.ndarray], ag: common.Agreement) -> bool:
        """Whether `grads` equal the eager step's with the IG gradients detached, i.e. the
        second-order term is missing."""
        orig = self.integrated_gradients
        self.integrated_gradients = lambda f: orig(f).detach()  # type: ignore[method-assign]
        try:
            _, _, _, detached = self.gradients(True, self.loss)
        finally:
            self.integrated_gradients = orig  # type: ignore[method-assign]
        for n, g in grads.items():
            ag.add("grad/" + n, g, detached[n])
        return ag.ok

    def sgdw(self, names: list[str], grads: tuple[Any, ...], step: int) -> None:
        """agilenn's SGDW: v ← μv − lr·g; θ ← θ − wd·lr·θ + v, lr cosine over the schedule."""
        o = self.case.config["optimizer"]
        lr = o["lr"] * 0.5 * (1 + math.cos(math.pi * min(step, o["cosine_steps"]) / o["cosine_steps"]))
        params = [self.params[n] for n in names]
        bufs = [self.momenta.setdefault(n, torch.zeros_like(self.params[n])) for n in names]
        with torch.no_grad():
            torch._foreach_mul_(bufs, o["momentum"])
            torch._foreach_add_(bufs, list(grads), alpha=-lr)
            torch._foreach_mul_(params, 1.0 - o["weight_decay"] * lr)
            torch._foreach_add_(params, bufs)


def check_case(case: common.Case, agreement: Callable[[common.Case], common.Agreement],
               args: Any) -> list[common.Agreement]:
    s = TorchStep(case, args.device)
    out = []
    for attribution in (True, False):
        ag, _ = s.check(attribution, s.loss, agreement(case))
        what = "second-order" if attribution else "plain"
        ag.print(f"torch eager {what} vs agilenn ({case.preset['name']} b{case.config['batch']} {case.dtype} "
                 f"{case.config['quantizer']})", args.verbose)
        out.append(ag)
    used = TorchLayers(s.params, s.states)
    model.forward(used, s.images, s.p, True)
    model.reference_body(used, torch.zeros(1, s.p["feature_channels"], 4, 4, dtype=s.dtype, device=s.device), s.p)
    unused = set(case.weights) - used.used
    if unused:  # a tensor agilenn feeds that this model never reads: a structural mismatch
        raise SystemExit(f"torch peer: the model does not use {sorted(unused)[:5]}...")
    return out


def mode_loss(s: TorchStep, base: str) -> Callable[..., Any]:
    """The loss function of a mode. compile: torch.compile of the whole loss (forward, IG
    with create_graph=True, attribution losses); compile-parts: only the first-order part
    (FE, LP, quantizer, RP) compiled, the reference net's double backward eager."""
    if base == "compile":
        return torch.compile(s.loss)
    if base == "compile-parts":
        s.forward_fn = torch.compile(s.forward)
    return s.loss


def check_mode(s: TorchStep, base: str, attribution: bool,
               grad_tolerance: float | None) -> tuple[TorchStep, Callable[..., Any], common.Agreement | None, str]:
    """Runs a mode's code once on the step's case and compares with agilenn. Returns the
    step, its loss function, the agreement, and why the mode is unsupported ("" if not)."""
    case = s.case
    loss_fn = mode_loss(s, base)
    try:
        ag, grads = s.check(attribution, loss_fn, common.agreement_for(case, grad_tolerance))  # compiles
    except Exception as e:  # noqa: BLE001 - report why torch.compile refuses, do not crash the run
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        return s, loss_fn, None, f"{type(e).__name__}: {reason}"
    if not ag.ok and base != "eager" and attribution and s.first_order_only(grads, common.agreement_for(case, grad_tolerance)):
        name, err = ag.worst
        return s, loss_fn, ag, (f"wrong gradients ({case.dtype}: {err:.1e} in {name}): torch.compile drops the "
                                "double-backward term; they equal the eager step's with the IG gradients detached")
    return s, loss_fn, ag, ""


def step_memory(step: Callable[[], None], device: str) -> int | None:
    """Peak bytes of the allocator's live tensors during one step, above the start. CPU:
    the profiler's allocation and free events (None if this PyTorch does not give them)."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except (AttributeError, RuntimeError) as e:
        print(f"torch peer: no CPU allocation events ({type(e).__name__}: {e})")
        return None
    live = peak = 0
    for _, nbytes in sorted(events):
        live += nbytes
        peak = max(peak, live)
    return peak


def run_mode(args: Any, mode: str) -> list[dict[str, Any]]:
    """Checks one mode on the f32 case (loosely), times it there, then checks its code on
    the f64 companions (the check that decides: an f32 check cannot tell a dropped term
    from a ReLU6 mask flipped by rounding)."""
    case = common.load_case(args.dir)
    attribution = not mode.endswith("-plain")
    base = mode.removesuffix("-plain")
    kind = "second-order" if attribution else "plain"
    batch = case.config["batch"]
    s = TorchStep(case, args.device)
    s, loss_fn, ag, why = check_mode(s, base, attribution, args.grad_tolerance)
    if why:
        return [common.row("torch", base, kind, batch, "unsupported", why, agreement=ag.to_json() if ag else None)]
    names = s.trainable(attribution)
    plist = [s.params[n] for n in names]
    counter = [0]

    def step() -> None:
        loss, _ = loss_fn(attribution, s.states)
        grads = torch.autograd.grad(loss, plist)
        float(loss)  # the loss on the host, as agilenn's trainer reads it
        if not args.no_update:
            s.sgdw(names, grads, counter[0])
        counter[0] += 1

    sync: Callable[[], None] = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    timing = common.time_steps(step, sync, args.warmup, args.iters)
    timing["step_memory_bytes"] = step_memory(step, args.device)
    timing["memory_measure"] = common.STEP_MEMORY
    # After the timing (so its memory does not count): this mode's code on the f64 companion,
    # the check that decides (eager ran on it in the parent already).
    extra: dict[str, Any] = {}
    for d in args.check_dir:
        c64 = common.load_case(d)
        if c64.dtype != "f64" or base == "eager":
            continue
        _, _, ag64, why = check_mode(TorchStep(c64, args.device), base, attribution, None)
        if why or not ag64.ok:
            return [common.row("torch", base, kind, batch, "unsupported" if why else "disagree",
                               why or "f64 agreement failed", agreement=ag.to_json(),
                               agreement_f64=ag64.to_json() if ag64 else None)]
        extra["agreement_f64"] = ag64.to_json()
    status = "ok" if ag.ok else "disagree"
    return [common.row("torch", base, kind, batch, status, "" if ag.ok else "agreement failed",
                       timing, agreement=ag.to_json(), **extra, includes_update=not args.no_update,
                       threads=torch.get_num_threads(), version=torch.__version__, dtype=case.dtype)]


def main() -> int:
    ap = common.peer_args(__doc__.splitlines()[1], MODES)
    args = ap.parse_args()
    if torch is None:
        print(f"torch peer: skipped (PyTorch not installed: {_IMPORT_ERROR})")
        common.write_rows(args.json, [common.row("torch", "-", "-", 0, "skipped", f"PyTorch not installed: {_IMPORT_ERROR}")])
        return common.EXIT_SKIPPED
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch peer: skipped (no CUDA device visible to PyTorch)")
        common.write_rows(args.json, [common.row("torch", "-", "-", 0, "skipped", "no CUDA device visible to PyTorch")])
        return common.EXIT_SKIPPED
    # agilenn computes convolutions and GEMMs in full float32 (FMA, no TF32): so do we.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if not args.only_mode:
        print(f"torch peer: PyTorch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    return common.peer_main("torch", os.path.abspath(__file__), args, check_case, run_mode)


if __name__ == "__main__":
    sys.exit(main())
