#!/usr/bin/env python3
"""Runs the test set through an agilenn-export directory in real runtimes and checks it.

Usage: tools/verify-export.py DIR [--data-dir D] [--limit N] [--int8-points P]

For every test image (the first N, by default as many as the export measured): the manifest's
preprocessing, the device half in onnxruntime (float) and, quantized to int8, in LiteRT's
interpreter (device_int8.tflite), the codes of each through the export's own C99 encoder
(compiled here from DIR/codec) and a decoder of the stream format the manifest names, the
server half in onnxruntime, then top-1; with device_c99/ (--target c99), the C99 device half
built here with warnings as errors, whose local logits, codes and stream must equal those of
LiteRT's reference kernels bit for bit on every image. Checks the artifacts' sha256 first. Prints top-1 of
(a) the engine (from the manifest), (b) the float split and (c) the int8 device half with the
float server, the coded bits per image and how many codes the int8 half gives as the float
one; exits 1 unless every image round-trips the codec, (b) is within 0.1 point of (a) and (c)
within P points of (a) (by default 1, the export's target for a trained model).

Datasets: fashion-mnist and mnist (IDX files, gzipped or not), cifar10 and cifar100 (binary
versions), as agilenn-train reads them.
"""
import argparse
import ctypes
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter, OpResolverType

DEFAULT_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}


def read_maybe_gzip(path):
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def idx_test_split(directory):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(directory, name)):
                return os.path.join(directory, name)
        sys.exit(f"verify-export: no {stem}[.gz] in {directory}")

    images = read_maybe_gzip(find("t10k-images-idx3-ubyte"))
    labels = read_maybe_gzip(find("t10k-labels-idx1-ubyte"))
    n, h, w = (int.from_bytes(images[4 * k:4 * k + 4], "big") for k in (1, 2, 3))
    x = np.frombuffer(images, np.uint8, n * h * w, 16).reshape(n, h, w, 1)
    return np.repeat(x, 3, axis=3), np.frombuffer(labels, np.uint8, n, 8).astype(np.int64)


def cifar_test_split(directory, name):
    path, label_byte, record = ((os.path.join(directory, "test_batch.bin"), 0, 3073) if name == "cifar10"
                                else (os.path.join(directory, "test.bin"), 1, 3074))
    raw = np.frombuffer(read_maybe_gzip(path), np.uint8).reshape(-1, record)
    images = raw[:, record - 3072:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, raw[:, label_byte].astype(np.int64)


def resize_bilinear(x, size):
    """[H,W,C] float32 to [size,size,C] as the engine's loader does it (kernels/shared/resize.h):
    half-pixel centres, no antialiasing, float32 arithmetic, a + (b - a)·t along x then y."""
    h, w = x.shape[:2]
    if (h, w) == (size, size):
        return x
    f32 = np.float32

    def taps(n_in):
        src = (np.arange(size, dtype=f32) + f32(0.5)) * f32(n_in) / f32(size) - f32(0.5)
        floor = np.floor(src)
        lo = np.clip(floor, 0, n_in - 1).astype(np.int64)
        hi = np.clip(np.ceil(src), 0, n_in - 1).astype(np.int64)
        return lo, hi, (src - floor).astype(f32)

    y0, y1, fy = taps(h)
    x0, x1, fx = taps(w)
    fx = fx[None, :, None]
    rows = x[:, x0] + (x[:, x1] - x[:, x0]) * fx
    top, bottom = rows[y0], rows[y1]
    return top + (bottom - top) * fy[:, None, None]


def test_split(manifest, data_dir):
    """The test images [N,H,W,3] uint8 and labels of the manifest's dataset."""
    dataset = manifest["dataset"]
    data_dir = data_dir or DEFAULT_DIRS.get(dataset)
    if data_dir is None:
        sys.exit(f"verify-export: --data-dir needed: where the {dataset} files are")
    if dataset in ("fashion-mnist", "mnist"):
        return idx_test_split(data_dir)
    if dataset in ("cifar10", "cifar100"):
        return cifar_test_split(data_dir, dataset)
    sys.exit(f"verify-export: no reader here for dataset '{dataset}'")


def preprocess(image, manifest):
    """One image as the device half takes it: [1,S,S,3] float32, the manifest's preprocessing."""
    mean = np.array(manifest["input"]["mean"], np.float32)
    std = np.array(manifest["input"]["std"], np.float32)
    return resize_bilinear((image.astype(np.float32) / 255 - mean) / std, manifest["input"]["shape"][1])[None]


def code_count(manifest):
    """Codes per image: one per remote value of the features [h,w,C]."""
    h, w = manifest["features"]["shape"][:2]
    return h * w * manifest["features"]["remote_channels"]


def quantize(x, q):
    """A float tensor as int8 with the quantization {scale, zero_point} of the manifest."""
    return np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8)


def compile_c(sources, include_dirs, library):
    """Builds C99 sources as the device would (warnings as errors) into a shared library."""
    flags = ["-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
    subprocess.run(["cc", *flags, *(f"-I{d}" for d in include_dirs), "-o", library, *sources], check=True)
    return ctypes.CDLL(library)


def compile_encoder(codec_dir, build_dir):
    lib = compile_c([os.path.join(codec_dir, "agilenn_codec.c")], [], os.path.join(build_dir, "agilenn_codec.so"))
    lib.agilenn_codec_encode.restype = ctypes.c_size_t
    lib.agilenn_codec_bound.restype = ctypes.c_size_t
    lib.agilenn_codec_bound.argtypes = [ctypes.c_size_t]
    return lib


def compile_device_c99(export_dir, build_dir):
    """The C99 device half (--target c99) with the codec, as a library: agilenn_device_run."""
    c99, codec = os.path.join(export_dir, "device_c99"), os.path.join(export_dir, "codec")
    sources = [os.path.join(c99, "agilenn_device.c"), os.path.join(c99, "agilenn_int8.c"),
               os.path.join(codec, "agilenn_codec.c")]
    lib = compile_c(sources, [c99, codec], os.path.join(build_dir, "agilenn_device.so"))
    lib.agilenn_device_run.restype = ctypes.c_size_t
    return lib


class Model(ctypes.Structure):
    _fields_ = [("contexts", ctypes.c_uint32), ("symbols", ctypes.c_uint32),
                ("freq", ctypes.POINTER(ctypes.c_uint16)), ("cum", ctypes.POINTER(ctypes.c_uint16))]


def decode(stream, n, freq, cum, prob_bits):
    """The stream format of agilenn_codec.h, decoded: state first, then renormalisation bytes."""
    total, low = 1 << prob_bits, 1 << 23
    contexts, symbols = freq.shape
    slot_symbol = np.zeros((contexts, total), np.int64)
    for c in range(contexts):
        for s in range(symbols):
            slot_symbol[c, cum[c, s]:cum[c, s] + freq[c, s]] = s
    x = int.from_bytes(stream[:4], "little")
    at, out = 4, np.zeros(n, np.uint8)
    for i in range(n):
        c = i % contexts
        slot = x & (total - 1)
        s = slot_symbol[c, slot]
        out[i] = s
        x = int(freq[c, s]) * (x >> prob_bits) + slot - int(cum[c, s])
        while x < low:
            if at >= len(stream):
                raise ValueError(f"stream ends before code {i}")
            x = (x << 8) | stream[at]
            at += 1
    if x != low or at != len(stream):
        raise ValueError("stream does not end in the encoder's initial state")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--int8-points", type=float, default=1.0,
                        help="how far (c) may be from (a), in points of top-1")
    args = parser.parse_args()
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    if "device_int8" not in manifest:
        sys.exit(f"verify-export: {args.dir} was written by an older agilenn-export (no int8 device half): export again")
    for name, art in manifest["artifacts"].items():
        with open(os.path.join(args.dir, name), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != art["sha256"]:
            sys.exit(f"verify-export: {name} has sha256 {digest}, the manifest says {art['sha256']}")

    images, labels = test_split(manifest, args.data_dir)
    limit = args.limit or manifest["measured"]["test_images"]
    images, labels = images[:limit], labels[:limit]

    codec = manifest["codec"]
    contexts, symbols = codec["contexts"], codec["symbols"]
    freq = np.array(codec["freq"], np.uint16).reshape(contexts, symbols)
    cum = np.concatenate([np.zeros((contexts, 1), np.uint16), np.cumsum(freq, 1, dtype=np.uint16)[:, :-1]], 1)
    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    device = ort.InferenceSession(os.path.join(args.dir, "device.onnx"), options, providers=["CPUExecutionProvider"])
    server = ort.InferenceSession(os.path.join(args.dir, "server.onnx"), options, providers=["CPUExecutionProvider"])

    int8 = Interpreter(model_path=os.path.join(args.dir, "device_int8.tflite"), num_threads=1)
    int8.allocate_tensors()
    int8_in = {d["name"]: d for d in int8.get_input_details()}["images"]
    int8_out = {d["name"]: d for d in int8.get_output_details()}
    quantization = manifest["device_int8"]["quantization"]
    logit_scale, logit_zero = quantization["local_logits"]["scale"], quantization["local_logits"]["zero_point"]

    cum = np.ascontiguousarray(cum)
    with tempfile.TemporaryDirectory() as build:
        lib = compile_encoder(os.path.join(args.dir, "codec"), build)
        model = Model(contexts, symbols, freq.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)),
                      cum.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)))

        def sent(codes, i):
            """The codes as the server receives them: encoded on the device, decoded here."""
            flat = np.ascontiguousarray(codes.reshape(-1))
            out = (ctypes.c_uint8 * lib.agilenn_codec_bound(flat.size))()
            n = lib.agilenn_codec_encode(ctypes.byref(model), flat.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                         ctypes.c_size_t(flat.size), out, ctypes.c_size_t(len(out)))
            if n == 0:
                sys.exit(f"verify-export: the encoder failed on test image {i}")
            stream = bytes(out[:n])
            back = decode(stream, flat.size, freq, cum, codec["prob_bits"])
            if not np.array_equal(back, flat):
                sys.exit(f"verify-export: decode(encode(codes)) differs on test image {i}")
            return back.reshape(codes.shape), stream

        # The C99 device half, where the export has it: the same int8 model, which must give
        # the local logits and codes of LiteRT's reference kernels bit for bit (the default
        # interpreter's XNNPACK kernels requantize in float and differ in a code now and then),
        # and the encoder's stream of those codes.
        device_c = None
        if os.path.isdir(os.path.join(args.dir, "device_c99")):
            device_c = compile_device_c99(args.dir, build)
            reference = Interpreter(model_path=os.path.join(args.dir, "device_int8.tflite"),
                                    experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            reference.allocate_tensors()
            reference_out = {d["name"]: d["index"] for d in reference.get_output_details()}
            c_logits = np.zeros(manifest["classes"], np.int8)
            c_codes = np.zeros(code_count(manifest), np.uint8)
            c_stream = (ctypes.c_uint8 * lib.agilenn_codec_bound(c_codes.size))()

        correct, correct_int8, same_class, bits, same_codes, total_codes, logits_seen = 0, 0, 0, 0, 0, 0, []
        for i in range(len(labels)):
            x = preprocess(images[i], manifest)
            local_logits, codes = device.run(["local_logits", "codes"], {"images": x})
            received, stream = sent(codes, i)
            bits += 8 * len(stream)
            (logits,) = server.run(["logits"], {"codes": received, "local_logits": local_logits})
            predicted = np.argmax(logits[0])
            correct += int(predicted == labels[i])
            if i < len(manifest["measured"]["first_test_logits"]):
                logits_seen.append(logits[0])

            q = quantize(x, quantization["images"])
            int8.set_tensor(int8_in["index"], q)
            int8.invoke()
            codes8 = int8.get_tensor(int8_out["codes"]["index"])
            logits8 = int8.get_tensor(int8_out["local_logits"]["index"])
            local8 = (logit_scale * (logits8.astype(np.float32) - logit_zero)).astype(np.float32)
            received8, _ = sent(codes8, i)
            if device_c is not None:
                reference.set_tensor(reference.get_input_details()[0]["index"], q)
                reference.invoke()
                ref_codes = reference.get_tensor(reference_out["codes"]).reshape(-1)
                ref_logits = reference.get_tensor(reference_out["local_logits"]).reshape(-1)
                _, ref_stream = sent(ref_codes, i)
                n = device_c.agilenn_device_run(q.ctypes.data_as(ctypes.c_void_p), c_logits.ctypes.data_as(ctypes.c_void_p),
                                                c_codes.ctypes.data_as(ctypes.c_void_p), c_stream,
                                                ctypes.c_size_t(len(c_stream)))
                if not (np.array_equal(c_logits, ref_logits) and np.array_equal(c_codes, ref_codes)
                        and bytes(c_stream[:n]) == ref_stream):
                    sys.exit(f"verify-export: the C99 device half differs from LiteRT's reference kernels on test "
                             f"image {i}")
            same_codes += int(np.sum(codes8 == codes))
            total_codes += codes.size
            (logits8,) = server.run(["logits"], {"codes": received8, "local_logits": local8})
            correct_int8 += int(np.argmax(logits8[0]) == labels[i])
            same_class += int(np.argmax(logits8[0]) == predicted)

    # Image by image, the runtime's logits against the engine's split: float32 in another order
    # differs by ~1e-6 (4e-7 to 7e-7 measured); a code flipped at a centroid midpoint can move
    # one image's logits, so the median image is what must agree.
    expected = np.array(manifest["measured"]["first_test_logits"])
    errors = [np.abs(seen - want).max() / max(1.0, np.abs(want).max()) for seen, want in zip(logits_seen, expected)]
    if errors and np.median(errors) > 1e-5:
        sys.exit(f"verify-export: the runtimes' logits differ from the engine's (median relative error "
                 f"{np.median(errors):.2e} over {len(errors)} test images): the preprocessing or a half differs")
    engine = manifest["measured"]["engine_top1"]
    split, split_int8 = correct / len(labels), correct_int8 / len(labels)
    budget = manifest["device_int8"]["budget"]
    print(f"test images {len(labels)}: (a) engine top-1 {engine:.4f}  (b) float split in onnxruntime {split:.4f}  "
          f"(c) int8 device half in LiteRT + float server {split_int8:.4f} ({same_codes / total_codes:.2%} of "
          f"its codes as the float half's, {same_class / len(labels):.2%} of its classes as (b)'s); remote codes {bits / len(labels):.1f} bits/image coded "
          f"({manifest['measured']['bits_per_image']['raw']:.0f} raw); codec round trip ok; logits of the first "
          f"{len(errors)} images within {max(errors) if errors else 0:.1e} of the engine's; int8 device half "
          f"{budget['model_bytes']} bytes, {budget['peak_activation_bytes']} bytes of activations at its peak")
    if device_c is not None:
        print(f"C99 device half (device_c99/): local logits, codes and stream bit-identical to LiteRT's reference "
              f"kernels on {len(labels)} test images")
    if limit != manifest["measured"]["test_images"]:
        print(f"(a) was measured on {manifest['measured']['test_images']} test images, this run took {limit}: "
              f"(b) and (c) are not compared with it")
        return
    if abs(split - engine) > 0.001:
        sys.exit(f"verify-export: (b) {split:.4f} is more than 0.1 point from (a) {engine:.4f}")
    if abs(split_int8 - engine) > args.int8_points / 100:
        sys.exit(f"verify-export: (c) {split_int8:.4f} is more than {args.int8_points:g} points from (a) {engine:.4f}")


if __name__ == "__main__":
    main()
