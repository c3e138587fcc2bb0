#!/usr/bin/env python3
"""Runs an export's C99 device half on a Cortex-M7 under QEMU and checks it against the host.

Usage: tools/run-mcu.py DIR [--data-dir D] [--images N]

DIR is an agilenn-export directory written with --target c99. The first N test images (4 by
default) are preprocessed as the manifest says and quantized to int8; the host build of
DIR/device_c99 and DIR/codec gives their local logits, codes and streams; the same sources are
then cross-compiled with Debian's arm-none-eabi-gcc (-mcpu=cortex-m7 -mthumb, hard-float ABI,
-O2, warnings as errors) and linked with tools/mcu (vector table, semihosting, a memory map of
the STM32F746's 1 MB flash and 320 KB RAM) for QEMU's mps2-an500 board, embedding the images
and the host's outputs; qemu-system-arm runs it (-icount, so SysTick counts instructions).
Prints the device half's .text, .rodata and .bss (its own objects, the codec's included), the
peak stack and the instructions per image; exits 1 unless every image gives the host's
outputs byte for byte.
"""
import argparse
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16", "-O2", "-Wall",
             "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"]


def load_verify_export():
    spec = importlib.util.spec_from_file_location("verify_export", os.path.join(TOOLS, "verify-export.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def c_rows(name, ctype, rows, width):
    lines = [f"static const {ctype} {name}[AGILENN_CASES][{width}] = {{"]
    for row in rows:
        lines.append("  {" + ", ".join(str(int(v)) for v in row) + "},")
    return "\n".join(lines + ["};"])


def section_sizes(elf_or_objects):
    """Bytes per section kind (.text, .rodata, .data, .bss) over ELF files, from arm-none-eabi-size -A."""
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for path in elf_or_objects:
        out = subprocess.run(["arm-none-eabi-size", "-A", path], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            for kind in sizes:
                if parts[0] == f".{kind}" or parts[0].startswith(f".{kind}."):
                    sizes[kind] += int(parts[1])
    return sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    c99, codec_dir = os.path.join(args.dir, "device_c99"), os.path.join(args.dir, "codec")
    if not os.path.isdir(c99):
        sys.exit(f"run-mcu: {c99} is missing: export with --target c99")
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    verify = load_verify_export()
    images, _ = verify.test_split(manifest, args.data_dir)
    images = images[:args.images]
    quantization = manifest["device_int8"]["quantization"]["images"]

    with tempfile.TemporaryDirectory() as build:
        device = verify.compile_device_c99(args.dir, build)
        classes = manifest["classes"]
        n_codes = verify.code_count(manifest)
        device.agilenn_codec_bound.restype = ctypes.c_size_t
        bound = device.agilenn_codec_bound(ctypes.c_size_t(n_codes))  # AGILENN_DEVICE_STREAM_BOUND
        quantized, logits, codes, streams, lengths = [], [], [], [], []
        for image in images:
            q = verify.quantize(verify.preprocess(image, manifest), quantization)
            out_logits, out_codes = np.zeros(classes, np.int8), np.zeros(n_codes, np.uint8)
            out_stream = (ctypes.c_uint8 * bound)()
            n = device.agilenn_device_run(q.ctypes.data_as(ctypes.c_void_p), out_logits.ctypes.data_as(ctypes.c_void_p),
                                          out_codes.ctypes.data_as(ctypes.c_void_p), out_stream, ctypes.c_size_t(bound))
            if n == 0:
                sys.exit("run-mcu: the host build failed to encode an image")
            quantized.append(q.reshape(-1))
            logits.append(out_logits)
            codes.append(out_codes)
            streams.append(list(out_stream[:n]) + [0] * (bound - n))
            lengths.append(n)
        with open(os.path.join(build, "cases.h"), "w") as f:
            f.write("/* Test images and the host build's outputs, written by tools/run-mcu.py. */\n")
            f.write(f"#define AGILENN_CASES {len(images)}\n")
            f.write(c_rows("case_images", "int8_t", quantized, "AGILENN_DEVICE_IMAGE_BYTES") + "\n")
            f.write(c_rows("case_logits", "int8_t", logits, "AGILENN_DEVICE_CLASSES") + "\n")
            f.write(c_rows("case_codes", "uint8_t", codes, "AGILENN_DEVICE_CODES") + "\n")
            f.write(c_rows("case_streams", "uint8_t", streams, "AGILENN_DEVICE_STREAM_BOUND") + "\n")
            f.write("static const uint32_t case_stream_bytes[AGILENN_CASES] = {" +
                    ", ".join(str(n) for n in lengths) + "};\n")

        device_sources = [os.path.join(c99, "agilenn_device.c"), os.path.join(c99, "agilenn_int8.c"),
                          os.path.join(codec_dir, "agilenn_codec.c")]
        includes = [f"-I{d}" for d in (c99, codec_dir, build, os.path.join(TOOLS, "mcu"))]
        objects = []
        for source in device_sources:
            obj = os.path.join(build, os.path.basename(source) + ".o")
            subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, *includes, "-c", source, "-o", obj], check=True)
            objects.append(obj)
        elf = os.path.join(build, "device.elf")
        subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                        "-T", os.path.join(TOOLS, "mcu", "mps2_an500.ld"), "-Wl,--gc-sections", *includes,
                        os.path.join(TOOLS, "mcu", "startup.c"), os.path.join(TOOLS, "mcu", "main.c"), *objects,
                        "-o", elf], check=True)
        run = subprocess.run(["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-nographic", "-monitor",
                              "none", "-serial", "none", "-semihosting-config", "enable=on,target=native",
                              "-icount", "shift=0", "-kernel", elf], capture_output=True, text=True, timeout=600)
        output = run.stdout + run.stderr  # semihosting writes to QEMU's stderr
        print(output, end="")
        device_sizes = section_sizes(objects)

    lines = output.splitlines()
    report = {line.split()[0]: line for line in lines if line.split()}
    ok = sum(1 for line in lines if line.startswith("image ") and line.endswith(" ok"))
    print(f"device half on the Cortex-M7 (QEMU mps2-an500): {ok} of {len(images)} images equal to the host build; "
          f"its code .text {device_sizes['text']} B, constants .rodata {device_sizes['rodata']} B, "
          f".data {device_sizes['data']} B, arena .bss {device_sizes['bss']} B; "
          f"{report.get('stack', 'stack ?')}; {report.get('instructions', 'instructions ?')}")
    if run.returncode != 0 or ok != len(images):
        sys.exit(f"run-mcu: QEMU exited {run.returncode}, {ok} of {len(images)} images equal to the host build")


if __name__ == "__main__":
    main()
