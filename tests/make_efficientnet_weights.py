#!/usr/bin/env python3
"""A torchvision EfficientNetV2-S with random weights, and what PyTorch computes with it,
for tests/test_import_reference.cpp.

Writes to OUT_DIR:
  torchvision.safetensors  the state dict (random weights, randomised batch-norm
                           statistics), as safetensors.torch.save_file writes it;
  keras.safetensors        the same weights under the Keras application's variable names
                           and layouts ("block1a_project_conv/kernel:0", HWIO kernels,
                           depthwise [KH,KW,C,1], dense [in,out]);
  cases.safetensors        inputs (NHWC, float64) and PyTorch's eval-mode logits in float32
                           and float64: the full net on images (torchvision's symmetric
                           padding, and TensorFlow's "same" padding for the Keras weights),
                           and the stem-less body on 24-channel features.
Nothing is downloaded: the net is built with weights=None.
"""
import copy
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

CLASSES = 10


def randomise(model, generator):
    """Random batch-norm affine parameters and statistics, so that importing them wrongly
    (a swapped mean and variance, a dropped beta) shows in the logits. The statistics are
    first measured on random images (else the eval-mode net's output barely depends on its
    input), then perturbed."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
        model.train()
        for _ in range(4):
            model(torch.rand(8, 3, 64, 64, generator=generator) * 2 - 1)
        model.eval()
        for m in norms:
            n = m.num_features
            m.running_mean.add_(torch.randn(n, generator=generator) * 0.05 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(n, generator=generator) * 0.2 + 0.9)
            m.momentum = 0.1
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.add_(torch.randn(m.out_channels, generator=generator) * 0.1)


class TensorFlowSamePadding(torch.nn.Module):
    """A convolution padded by TensorFlow's "same" rule (the odd pixel after)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        conv.padding = (0, 0)

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.conv.kernel_size, self.conv.stride, self.conv.dilation):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return self.conv(F.pad(x, (left, right, top, bottom)))


def with_tensorflow_padding(model):
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Conv2d):
                setattr(parent, name, TensorFlowSamePadding(child))
    return model


def body(model, features):
    """The net without its stem (features.0) on [N,24,H,W] features."""
    h = model.features[1:](features)
    return model.classifier(torch.flatten(model.avgpool(h), 1))


def keras_weights(model):
    """The state dict under the Keras application's names and layouts."""
    sd = model.state_dict()
    out = {}

    def conv(keras, torch_name, depthwise=False):
        w = sd[torch_name + ".weight"]
        # OIHW -> HWIO; depthwise [C,1,KH,KW] -> [KH,KW,C,1].
        out[keras + ("/depthwise_kernel:0" if depthwise else "/kernel:0")] = (
            w.permute(2, 3, 0, 1) if depthwise else w.permute(2, 3, 1, 0))
        if torch_name + ".bias" in sd:
            out[keras + "/bias:0"] = sd[torch_name + ".bias"]

    def bn(keras, torch_name):
        for k, t in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                     ("moving_variance", "running_var")):
            out[f"{keras}/{k}:0"] = sd[f"{torch_name}.{t}"]

    conv("stem_conv", "features.0.0")
    bn("stem_bn", "features.0.1")
    for stage in range(1, 7):
        for block, module in enumerate(model.features[stage]):
            k = f"block{stage}{chr(ord('a') + block)}_"
            t = f"features.{stage}.{block}.block"
            kind = type(module).__name__
            if kind == "FusedMBConv" and len(module.block) == 1:
                conv(k + "project_conv", t + ".0.0")
                bn(k + "project_bn", t + ".0.1")
            elif kind == "FusedMBConv":
                conv(k + "expand_conv", t + ".0.0")
                bn(k + "expand_bn", t + ".0.1")
                conv(k + "project_conv", t + ".1.0")
                bn(k + "project_bn", t + ".1.1")
            else:
                conv(k + "expand_conv", t + ".0.0")
                bn(k + "expand_bn", t + ".0.1")
                conv(k + "dwconv2", t + ".1.0", depthwise=True)
                bn(k + "bn", t + ".1.1")
                conv(k + "se_reduce", t + ".2.fc1")
                conv(k + "se_expand", t + ".2.fc2")
                conv(k + "project_conv", t + ".3.0")
                bn(k + "project_bn", t + ".3.1")
    conv("top_conv", "features.7.0")
    bn("top_bn", "features.7.1")
    out["predictions/kernel:0"] = sd["classifier.1.weight"].t()
    out["predictions/bias:0"] = sd["classifier.1.bias"]
    return {k: v.contiguous().float() for k, v in out.items()}


def main(out_dir):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = torchvision.models.efficientnet_v2_s(weights=None, num_classes=CLASSES).eval()
    randomise(model, generator)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/torchvision.safetensors")
    save_file(keras_weights(model), f"{out_dir}/keras.safetensors")

    images = torch.rand(2, 3, 64, 64, generator=generator, dtype=torch.float64) * 2 - 1
    features = torch.randn(2, 24, 16, 16, generator=generator, dtype=torch.float64)
    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous()
    cases = {"images": nhwc(images), "features": nhwc(features)}
    keras_model = with_tensorflow_padding(model)
    with torch.no_grad():
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            m = copy.deepcopy(model).to(dtype)
            cases[f"torchvision_logits_{suffix}"] = m(images.to(dtype))
            cases[f"torchvision_body_logits_{suffix}"] = body(m, features.to(dtype))
            cases[f"keras_logits_{suffix}"] = copy.deepcopy(keras_model).to(dtype)(images.to(dtype))
    save_file({k: v.contiguous() for k, v in cases.items()}, f"{out_dir}/cases.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
