"""The AgileNN model's structure (DESIGN.md §1, §7; engine/models/agilenn.cpp), written
once for both peers against a small `Layers` interface that each framework implements.
Parameter names are agilenn's, so weights and gradients map one to one. The structure
comes from the preset description in the case's config.json, not from a copy of the
preset tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Layers(Protocol):
    """Framework ops on agilenn-named tensors. `x` is a feature map or a [N,C] matrix in
    the framework's own layout; channel indices are agilenn's."""

    def conv(self, name: str, x: Any, stride: int, depthwise: bool = False, bias: bool = False) -> Any: ...
    def bn(self, name: str, x: Any, momentum: float, eps: float, train: bool) -> Any: ...
    def dense(self, name: str, x: Any) -> Any: ...
    def relu6(self, x: Any) -> Any: ...
    def silu(self, x: Any) -> Any: ...
    def sigmoid(self, x: Any) -> Any: ...
    def pool(self, x: Any, keepdims: bool = False) -> Any: ...  # global average over h, w
    def channels(self, x: Any) -> int: ...
    def slice_channels(self, x: Any, begin: int, end: int) -> Any: ...
    def param(self, name: str) -> Any: ...
    def quantize(self, x: Any, centroids: Any, soft: bool) -> Any: ...
    def mix(self, local: Any, remote: Any, v: Any) -> Any: ...  # softmax(v)_0·local + softmax(v)_1·remote


@dataclass
class Outputs:
    features: Any
    logits: Any


def separable(L: Layers, name: str, x: Any, stride: int) -> Any:
    return L.conv(f"{name}.pointwise", L.conv(f"{name}.depthwise", x, stride, depthwise=True), 1)


def feature_extractor(L: Layers, images: Any, p: dict[str, Any]) -> Any:
    m, eps = p["bn_momentum"], p["bn_eps"]
    h = L.relu6(L.bn("fe.bn1", separable(L, "fe.sep1", images, p["fe_stride"]), m, eps, True))
    return L.relu6(L.bn("fe.bn2", separable(L, "fe.sep2", h, 1), m, eps, True))


def inverted_residual(L: Layers, name: str, x: Any, t: int, out: int, stride: int, m: float, eps: float) -> Any:
    cin, h = L.channels(x), x
    if t != 1:
        h = L.relu6(L.bn(f"{name}.expand_bn", L.conv(f"{name}.expand", h, 1), m, eps, True))
    h = L.relu6(L.bn(f"{name}.depthwise_bn", L.conv(f"{name}.depthwise", h, stride, depthwise=True), m, eps, True))
    h = L.bn(f"{name}.project_bn", L.conv(f"{name}.project", h, 1), m, eps, True)
    return x + h if stride == 1 and cin == out else h


def heads(L: Layers, f: Any, p: dict[str, Any], soft_quantizer: bool) -> Outputs:
    m, eps = p["bn_momentum"], p["bn_eps"]
    k, c = p["local_channels"], L.channels(f)
    local = L.bn("lp.bn", L.dense("lp.dense", L.pool(L.slice_channels(f, 0, k))), m, eps, True)
    centroids = L.sigmoid(L.param("quantizer.centroids")) * 6.0
    h = separable(L, "rp.stem", L.quantize(L.slice_channels(f, k, c), centroids, soft_quantizer), 1)
    for i, st in enumerate(p["rp_stages"]):
        for j in range(st["n"]):
            h = inverted_residual(L, f"rp.stage{i}.block{j}", h, st["t"], st["c"], st["s"] if j == 0 else 1, m, eps)
    h = L.relu6(L.bn("rp.head_bn", L.conv("rp.head", h, 1), m, eps, True))
    remote = L.bn("rp.bn", L.dense("rp.dense", L.pool(h)), m, eps, True)
    return Outputs(f, L.mix(local, remote, L.param("mix.v")))


def forward(L: Layers, images: Any, p: dict[str, Any], soft_quantizer: bool) -> Outputs:
    return heads(L, feature_extractor(L, images, p), p, soft_quantizer)


def squeeze_excite(L: Layers, name: str, x: Any) -> Any:
    s = L.silu(L.conv(f"{name}.reduce", L.pool(x, keepdims=True), 1, bias=True))
    return x * L.sigmoid(L.conv(f"{name}.expand", s, 1, bias=True))


def reference_body(L: Layers, f: Any, p: dict[str, Any]) -> Any:
    """The frozen reference net E without its stem, eval-mode batch norm."""
    r = p["reference"]
    m, eps = r["bn_momentum"], r["bn_eps"]

    def bn(name: str, x: Any) -> Any:
        return L.bn(name, x, m, eps, False)

    h = f
    for i, st in enumerate(r["stages"]):
        for j in range(st["layers"]):
            name, stride, cin = f"ref.stage{i}.block{j}", st["stride"] if j == 0 else 1, L.channels(h)
            se = max(1, int(cin * st["se_ratio"])) if st["se_ratio"] > 0 else 0
            x = h
            if st["block"] == "fused_mbconv":
                if st["expand"] == 1:
                    h = L.silu(bn(f"{name}.conv_bn", L.conv(f"{name}.conv", x, stride)))
                else:
                    h = L.silu(bn(f"{name}.expand_bn", L.conv(f"{name}.expand", x, stride)))
                    if se:
                        h = squeeze_excite(L, f"{name}.se", h)
                    h = bn(f"{name}.project_bn", L.conv(f"{name}.project", h, 1))
            else:
                if st["expand"] != 1:
                    h = L.silu(bn(f"{name}.expand_bn", L.conv(f"{name}.expand", h, 1)))
                h = L.silu(bn(f"{name}.depthwise_bn", L.conv(f"{name}.depthwise", h, stride, depthwise=True)))
                if se:
                    h = squeeze_excite(L, f"{name}.se", h)
                h = bn(f"{name}.project_bn", L.conv(f"{name}.project", h, 1))
            if stride == 1 and cin == st["channels"]:
                h = x + h
    h = L.silu(bn("ref.head_bn", L.conv("ref.head", h, 1)))
    return L.dense("ref.classifier", L.pool(h))
