#!/usr/bin/env python3
"""The AgileNN training step in JAX: the peer of agilenn's BM_Step.

Reads a case written by agilenn-peer-reference, builds the same model and loss in NHWC
with HWIO filters (agilenn's own layouts, so no conversion), checks loss, metrics, every
parameter gradient and every BN moving statistic against agilenn's, then times the whole
step under jax.jit: forward, integrated gradients (jax.grad of the reference net's CE
with respect to the interpolation points), the gradient of the loss through them (grad
of grad) and the SGDW update, as BM_Step does; and the same model's plain first-order
step. Each mode is timed in a fresh process. Exit status: 0 all checks passed, 1 a
disagreement, 3 JAX (or the device) is not available (skipped).

The α = 0 IG point comes from a per-class table computed once (not timed) by the peer
itself and checked against agilenn's, as agilenn's step does; see torch_step.py.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agilenn_model as model  # noqa: E402
import common  # noqa: E402
import numpy as np  # noqa: E402

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError as e:  # JAX is optional: the run skips this peer
    jax = None  # type: ignore[assignment]
    _IMPORT_ERROR = str(e)

MODES = ["jit", "jit-plain"]


class JaxLayers:
    """agilenn_model.Layers for JAX, NHWC. Train-mode batch norm records the new moving
    statistics in `updates` (returned by the traced function)."""

    def __init__(self, values: dict[str, Any], states: dict[str, Any]) -> None:
        self.values, self.states, self.updates, self.used = values, states, {}, set()

    def param(self, name: str) -> Any:
        self.used.add(name)
        return self.values[name]

    def conv(self, name: str, x: Any, stride: int, depthwise: bool = False, bias: bool = False) -> Any:
        w = self.param(name + ".weight")
        y = lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=x.shape[-1] if depthwise else 1)
        return y + self.param(name + ".bias") if bias else y

    def bn(self, name: str, x: Any, momentum: float, eps: float, train: bool) -> Any:
        mean_name, var_name = name + ".moving_mean", name + ".moving_var"
        self.used.update((mean_name, var_name))
        gamma, beta = self.param(name + ".gamma"), self.param(name + ".beta")
        if not train:
            return (x - self.states[mean_name]) * (lax.rsqrt(self.states[var_name] + eps) * gamma) + beta
        axes = tuple(range(x.ndim - 1))
        mu = jnp.mean(x, axes)
        centred = x - mu
        var = jnp.mean(centred * centred, axes)
        n = x.size // x.shape[-1]
        self.updates[mean_name] = self.states[mean_name] * momentum + lax.stop_gradient(mu) * (1 - momentum)
        self.updates[var_name] = self.states[var_name] * momentum + lax.stop_gradient(var) * (n / (n - 1)) * (1 - momentum)
        return centred * lax.rsqrt(var + eps) * gamma + beta

    def dense(self, name: str, x: Any) -> Any:
        return x @ self.param(name + ".weight") + self.param(name + ".bias")

    def relu6(self, x: Any) -> Any:
        return jax.nn.relu6(x)

    def silu(self, x: Any) -> Any:
        return jax.nn.silu(x)

    def sigmoid(self, x: Any) -> Any:
        return jax.nn.sigmoid(x)

    def pool(self, x: Any, keepdims: bool = False) -> Any:
        return jnp.mean(x, (1, 2), keepdims=keepdims)

    def channels(self, x: Any) -> int:
        return x.shape[-1]

    def slice_channels(self, x: Any, begin: int, end: int) -> Any:
        return x[..., begin:end]

    def quantize(self, x: Any, centroids: Any, soft: bool) -> Any:
        d = jnp.square(x[..., None] - centroids)
        s = jnp.sum(jax.nn.softmax(-d, -1) * centroids, -1)
        if soft:
            return s
        return s + lax.stop_gradient(centroids[jnp.argmin(d, -1)] - s)  # hard forward, soft gradients

    def mix(self, local: Any, remote: Any, v: Any) -> Any:
        w = jax.nn.softmax(v)
        return local * w[0] + remote * w[1]


def cross_entropy(logits: Any, labels: Any) -> Any:
    """Per-sample −log_softmax[label]."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], 1)[:, 0]


class JaxStep:
    def __init__(self, case: common.Case, device: str) -> None:
        self.case, self.p, cfg = case, case.preset, case.config
        self.device = jax.devices(device if device != "cuda" else "gpu")[0]
        self.dtype = jnp.float64 if case.dtype == "f64" else jnp.float32
        self.alphas, self.weights = common.check_quadrature(cfg)

        def put(a: np.ndarray) -> Any:
            return jax.device_put(jnp.asarray(a, self.dtype), self.device)

        trainable = set(cfg["trainable"])
        params = case.names("parameter")
        self.frozen = {n: put(case.weights[n]) for n in params if n not in trainable}
        self.train_values = {n: put(case.weights[n]) for n in params if n in trainable}
        self.states = {n: put(case.weights[n]) for n in case.names("state")}
        self.images = put(case.images)
        self.labels = jax.device_put(jnp.asarray(case.labels, jnp.int32), self.device)
        self.table = self.zero_point_table() if cfg["zero_point_table"] else None

    def reference_ce_sum(self, frozen: dict[str, Any], states: dict[str, Any], points: Any, labels: Any) -> Any:
        return jnp.sum(cross_entropy(model.reference_body(JaxLayers(frozen, states), points, self.p), labels))

    def zero_point_table(self) -> Any:
        p, classes = self.p, self.case.config["classes"]
        side = -(-p["input_size"] // p["fe_stride"])
        zeros = jnp.zeros((classes, side, side, p["feature_channels"]), self.dtype)
        f = jax.jit(jax.grad(lambda z, fr, st: self.reference_ce_sum(fr, st, z, jnp.arange(classes))))
        return f(jax.device_put(zeros, self.device), self.frozen, self.states)

    def loss(self, attribution: bool, train_values: dict[str, Any], frozen: dict[str, Any], states: dict[str, Any],
             images: Any, labels: Any, table: Any) -> tuple[Any, tuple[dict[str, Any], dict[str, Any]]]:
        cfg, p = self.case.config, self.p
        L = JaxLayers({**train_values, **frozen}, states)
        out = model.forward(L, images, p, cfg["quantizer"] == "soft")
        ce = jnp.mean(cross_entropy(out.logits, labels))
        metrics = {"ce": ce, "correct": jnp.sum(jnp.argmax(out.logits, 1) == labels).astype(self.dtype)}
        if not attribution:
            return ce, (metrics, L.updates)
        f, b, k = out.features, labels.shape[0], p["local_channels"]
        a, moving, moving_w = None, [], []
        for alpha, w in zip(self.alphas, self.weights):
            if alpha == 0.0:
                if table is not None:
                    term = table[labels] * (w / b)
                else:  # independent of θ: first order only
                    g0 = jax.grad(self.reference_ce_sum, 2)(frozen, states, jnp.zeros_like(f), labels)
                    term = lax.stop_gradient(g0) * (w / b)
                a = term if a is None else a + term
            else:
                moving.append(f * alpha)
                moving_w.append(w)
        if moving:
            points, rep = jnp.concatenate(moving), jnp.tile(labels, len(moving))
            g = jax.grad(lambda x: self.reference_ce_sum(frozen, states, x, rep) / b)(points)
            for i, w in enumerate(moving_w):
                term = g[i * b:(i + 1) * b] * w
                a = term if a is None else a + term
        importance = jnp.abs(f * a)  # I [B,h,w,C]
        per_channel = jnp.sum(importance, (1, 2))  # P [B,C]
        local, total = jnp.sum(per_channel[:, :k], 1), jnp.sum(per_channel, 1)
        spread = jnp.max(importance[..., k:], (1, 2, 3)) - jnp.min(importance[..., :k], (1, 2, 3))
        guarded = total + 1e-9  # both ratios guarded, as agilenn's (an all-zero sample: no 0/0)
        s = local / guarded
        skew_loss = jnp.mean(jax.nn.relu(cfg["rho"] - s))
        disorder_loss = jnp.mean(jax.nn.relu(spread / guarded))
        metrics.update(skew_loss=skew_loss, disorder_loss=disorder_loss, skewness=jnp.mean(s))
        lam = cfg["lambda"]
        return ce * lam + (skew_loss + disorder_loss) * (1 - lam), (metrics, L.updates)

    def step_fn(self, attribution: bool, update: bool) -> Any:
        """(trainable, momenta, states, frozen, images, labels, table, lr) -> new trainable,
        momenta, states, loss, metrics, grads: one jitted training step with agilenn's SGDW."""
        o = self.case.config["optimizer"]
        grad_fn = jax.value_and_grad(lambda tv, *rest: self.loss(attribution, tv, *rest), has_aux=True)

        def step(tv: Any, mom: Any, states: Any, frozen: Any, images: Any, labels: Any, table: Any, lr: Any) -> Any:
            (loss, (metrics, updates)), grads = grad_fn(tv, frozen, states, images, labels, table)
            new_states = {**states, **updates}
            if update:
                mom = jax.tree.map(lambda v, g: o["momentum"] * v - lr * g, mom, grads)
                tv = jax.tree.map(lambda t, v: t - o["weight_decay"] * lr * t + v, tv, mom)
            return tv, mom, new_states, loss, metrics, grads

        return step

    def lr(self, step: int) -> float:
        o = self.case.config["optimizer"]
        return o["lr"] * 0.5 * (1 + math.cos(math.pi * min(step, o["cosine_steps"]) / o["cosine_steps"]))

    def trainable(self, attribution: bool) -> list[str]:
        return self.case.config["trainable" if attribution else "plain_trainable"]

    def inputs(self, attribution: bool) -> tuple[Any, ...]:
        names = self.trainable(attribution)
        tv = {n: self.train_values[n] for n in names}
        mom = {n: jnp.zeros_like(v) for n, v in tv.items()}
        return tv, mom, dict(self.states), self.frozen, self.images, self.labels, self.table, self.dtype(self.lr(0))

    def check(self, attribution: bool, compiled: Any, ag: common.Agreement) -> common.Agreement:
        exp, pre = self.case.expected, "" if attribution else "plain/"
        tv, mom, states, *rest = self.inputs(attribution)
        tv, mom, states = jax.tree.map(jnp.copy, (tv, mom, states))  # the executable may donate them
        _, _, new_states, loss, metrics, grads = compiled(tv, mom, states, *rest)
        ag.add("loss", np.asarray(loss), exp[pre + "loss"])
        for n, v in metrics.items():
            ag.add("metric/" + n, np.asarray(v), exp[pre + "metric/" + n])
        for n in self.trainable(attribution):
            ag.add("grad/" + n, np.asarray(grads[n]), exp[pre + "grad/" + n])
        for key in exp:
            if key.startswith(pre + "state/"):
                n = key[len(pre + "state/"):]
                ag.add("state/" + n, np.asarray(new_states[n]), exp[key])
        if attribution and self.table is not None:
            ag.add("ig.zero_point_grads", np.asarray(self.table), exp[self.case.config["zero_point_table"]])
        return ag

    def compile(self, attribution: bool, update: bool, donate: bool) -> Any:
        fn = jax.jit(self.step_fn(attribution, update), donate_argnums=(0, 1, 2) if donate else ())
        return fn.lower(*self.inputs(attribution)).compile()


def check_case(case: common.Case, agreement: Any, args: Any) -> list[common.Agreement]:
    s = JaxStep(case, args.device)
    out = []
    for attribution in (True, False):
        ag = s.check(attribution, s.compile(attribution, update=False, donate=False), agreement(case))
        what = "second-order" if attribution else "plain"
        ag.print(f"jax jit {what} vs agilenn ({case.preset['name']} b{case.config['batch']} {case.dtype} "
                 f"{case.config['quantizer']})", args.verbose)
        out.append(ag)
    L = JaxLayers({**s.frozen, **s.train_values}, s.states)
    jax.eval_shape(lambda: model.forward(L, s.images, s.p, True).logits)
    jax.eval_shape(lambda: model.reference_body(L, jnp.zeros((1, 4, 4, s.p["feature_channels"]), s.dtype), s.p))
    unused = set(case.weights) - L.used
    if unused:  # a tensor agilenn feeds that this model never reads: a structural mismatch
        raise SystemExit(f"jax peer: the model does not use {sorted(unused)[:5]}...")
    return out


def run_mode(args: Any, mode: str) -> list[dict[str, Any]]:
    case = common.load_case(args.dir)
    s = JaxStep(case, args.device)
    attribution = not mode.endswith("-plain")
    kind, batch = ("second-order" if attribution else "plain"), case.config["batch"]
    # One executable for the check and the timing (the check feeds it copies of the
    # buffers it donates).
    compiled = s.compile(attribution, update=not args.no_update, donate=True)
    ag = s.check(attribution, compiled, common.agreement_for(case, args.grad_tolerance))
    mem = compiled.memory_analysis()  # XLA's buffer assignment for the whole step
    analysis = {k: int(getattr(mem, k, 0)) for k in ("temp_size_in_bytes", "output_size_in_bytes",
                                                      "alias_size_in_bytes", "argument_size_in_bytes",
                                                      "generated_code_size_in_bytes")} if mem is not None else {}
    tv, mom, states, frozen, images, labels, table, _ = s.inputs(attribution)
    carry = [tv, mom, states]
    counter = [0]

    def step() -> None:
        out = compiled(*carry, frozen, images, labels, table, s.dtype(s.lr(counter[0])))
        carry[:] = out[:3]
        float(out[3])  # the loss on the host, as agilenn's trainer reads it
        counter[0] += 1

    timing = common.time_steps(step, lambda: jax.block_until_ready(carry), args.warmup, args.iters)
    if analysis:  # temporaries + outputs that do not reuse a donated input's buffer
        timing["step_memory_bytes"] = (analysis["temp_size_in_bytes"] + analysis["output_size_in_bytes"]
                                       - analysis["alias_size_in_bytes"])
        timing["memory_measure"] = common.STEP_MEMORY
    status = "ok" if ag.ok else "disagree"
    return [common.row("jax", "jit", kind, batch, status, "" if ag.ok else "agreement failed", timing,
                       agreement=ag.to_json(), includes_update=not args.no_update, xla_memory=analysis,
                       version=jax.__version__, dtype=case.dtype)]


def main() -> int:
    ap = common.peer_args(__doc__.splitlines()[1], MODES)
    args = ap.parse_args()
    if jax is None:
        print(f"jax peer: skipped (JAX not installed: {_IMPORT_ERROR})")
        common.write_rows(args.json, [common.row("jax", "-", "-", 0, "skipped", f"JAX not installed: {_IMPORT_ERROR}")])
        return common.EXIT_SKIPPED
    dtypes = {common.load_case(d).dtype for d in [args.dir, *args.check_dir]}
    if "f64" in dtypes:
        jax.config.update("jax_enable_x64", True)
    # agilenn computes convolutions and GEMMs in full float32 (no TF32/bf16 passes): so do we.
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        jax.devices("gpu" if args.device == "cuda" else "cpu")
    except RuntimeError as e:
        print(f"jax peer: skipped (no {args.device} device for JAX: {e})")
        common.write_rows(args.json, [common.row("jax", "-", "-", 0, "skipped", f"no {args.device} device for JAX")])
        return common.EXIT_SKIPPED
    if not args.only_mode:
        print(f"jax peer: JAX {jax.__version__}, device {args.device}")
    return common.peer_main("jax", os.path.abspath(__file__), args, check_case, run_mode)


if __name__ == "__main__":
    sys.exit(main())
