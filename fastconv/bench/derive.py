"""Derive the benchmark shape suites from the architectures, and write them to benchmarks/suites/*.json.

    python -m fastconv.bench.derive            # rewrite benchmarks/suites/*.json
    python -m fastconv.bench.derive --check    # exit 1 if the JSON on disk differs from the derivation

The JSON files are the data the harness reads; this module is how they were made, so they can be
checked and regenerated rather than edited by hand. Every suite lists each *distinct* problem once
(same geometry = same problem): `count` says how often it occurs in the network and `aliases` names
the other layers with that geometry.

Conventions: activations NHWC (N, H, W, C), filters (R, S, C/groups, K), padding explicit per side
((top, bottom), (left, right)). Padding is the symmetric padding of the usual PyTorch definitions
(ResNet stem pad 3, 3x3 convs pad 1, stem max-pool pad 1); Keras 'same' gives the same output sizes
but pads stride-2 layers asymmetrically ((2, 3) for the 7x7/2 stem, (0, 1) for 3x3/2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..shapes import conv_output_hw

BATCHES = [1, 32, 128, 256]
DTYPES = ["fp32", "tf32", "fp16", "bf16"]


def _conv(name, h, w, c, k, r, s=None, stride=1, pad=0, groups=1, note=None):
    s = r if s is None else s
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    padding = ((pad, pad), (pad, pad)) if isinstance(pad, int) else tuple(tuple(p) for p in pad)
    p, q = conv_output_hw((h, w), (r, s), stride, padding)
    d = {"name": name, "kind": "conv2d", "H": h, "W": w, "C": c, "K": k, "R": r, "S": s,
         "stride": list(stride), "padding": [list(padding[0]), list(padding[1])], "dilation": [1, 1],
         "groups": groups, "out": [p, q]}
    if note:
        d["note"] = note
    return d


def _pool(name, h, w, c, r, stride, pad=0, note=None):
    padding = ((pad, pad), (pad, pad))
    p, q = conv_output_hw((h, w), (r, r), (stride, stride), padding, what="pool_size")
    d = {"name": name, "kind": "maxpool", "H": h, "W": w, "C": c, "pool": [r, r], "stride": [stride, stride],
         "padding": [list(padding[0]), list(padding[1])], "out": [p, q]}
    if note:
        d["note"] = note
    return d


def _gemm(name, m, n, k, note=None):
    d = {"name": name, "kind": "gemm", "M": m, "N": n, "K": k}
    if note:
        d["note"] = note
    return d


_GEOMETRY_KEYS = {"conv2d": ("H", "W", "C", "K", "R", "S", "stride", "padding", "dilation", "groups"),
                  "maxpool": ("H", "W", "C", "pool", "stride", "padding"),
                  "gemm": ("M", "N", "K")}


def geometry(problem: dict) -> tuple:
    """The key that makes two problems the same problem."""
    return (problem["kind"],) + tuple(json.dumps(problem[k]) for k in _GEOMETRY_KEYS[problem["kind"]])


def distinct(instances, name_of=None) -> list[dict]:
    """Merge layers of equal geometry, first occurrence first: count them and keep the others' names
    as aliases. name_of(first, all_instances) may rename the merged entry."""
    groups: dict[tuple, list[dict]] = {}
    for inst in instances:
        groups.setdefault(geometry(inst), []).append(inst)
    out = []
    for insts in groups.values():
        merged = dict(insts[0])
        merged["name"] = name_of(insts) if name_of else insts[0]["name"]
        merged["count"] = len(insts)
        aliases = [i["name"] for i in insts if i["name"] != merged["name"]]
        if aliases:
            merged["aliases"] = aliases
        out.append(merged)
    return out


# ---- the networks ------------------------------------------------------------------------------
def seed_layers(batch_dim="batch") -> list[dict]:
    """28x28x1 -> Conv2D(64, 3x3, valid) -> 26x26x64 -> MaxPool 2x2 -> 13x13x64 -> Flatten (10816) -> Dense 10."""
    return [
        _conv("conv_3x3_64", 28, 28, 1, 64, 3),
        _pool("pool_2x2", 26, 26, 64, 2, 2),
        _gemm("dense_10816x10", batch_dim, 10, 13 * 13 * 64, note="Flatten 13*13*64 = 10816 -> Dense(10); M = batch"),
    ]


def resnet50_conv_instances() -> list[dict]:
    """Every conv of ResNet-50 (v1.5: the stride sits on the 3x3, as in torchvision and fastconv's zoo)
    at 224x224x3, in network order, one entry per layer: the stem and 16 bottleneck blocks of three
    convs plus 4 projection shortcuts = 1 + 48 + 4 = 53."""
    out = [_conv("conv1_7x7_s2", 224, 224, 3, 64, 7, stride=2, pad=3)]
    h, cin = 56, 64                       # after the 3x3/2 max-pool: 112 -> 56
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            tag = f"res{stage + 2}{'abcdef'[b]}"
            ho = (h + 2 - 3) // stride + 1
            out.append(_conv(f"{tag}_1x1_reduce", h, h, cin, width, 1))
            s2 = "_s2" if stride == 2 else ""
            out.append(_conv(f"{tag}_3x3{s2}", h, h, width, width, 3, stride=stride, pad=1))
            out.append(_conv(f"{tag}_1x1_expand", ho, ho, width, 4 * width, 1))
            if b == 0:                    # projection shortcut: channels change (and stride 2 after res2)
                out.append(_conv(f"{tag}_1x1_downsample{s2}", h, h, cin, 4 * width, 1, stride=stride))
            cin, h = 4 * width, ho
    return out


def _resnet_name(insts) -> str:
    """res3a_3x3_s2 stays block-specific; a geometry that recurs in blocks b.. becomes res3_3x3."""
    first = insts[0]["name"]
    if first.startswith("res") and any(i["name"][4] != "a" for i in insts):
        return first[:4] + first[5:]
    return first


def resnet50() -> dict:
    convs = distinct(resnet50_conv_instances(), _resnet_name)
    return {
        "name": "resnet50",
        "description": "Every distinct conv of ResNet-50 v1.5 at 224x224 (stem 7x7/2, the 1x1 reduce/expand and "
                       "3x3 convs of each stage, the 1x1 projection shortcuts), the stem max-pool and the classifier.",
        "problems": convs + [
            _pool("pool1_3x3_s2", 112, 112, 64, 3, 2, pad=1, note="stem max-pool 3x3/2 pad 1: 112 -> 56"),
            _gemm("fc_2048x1000", "batch", 1000, 2048, note="global average pool -> Dense(1000); M = batch"),
        ],
    }


VGG16_CFG = [(224, [(3, 64), (64, 64)]), (112, [(64, 128), (128, 128)]),
             (56, [(128, 256), (256, 256), (256, 256)]), (28, [(256, 512), (512, 512), (512, 512)]),
             (14, [(512, 512), (512, 512), (512, 512)])]


def vgg16() -> dict:
    convs, pools = [], []
    for stage, (h, layers) in enumerate(VGG16_CFG, start=1):
        for i, (cin, cout) in enumerate(layers, start=1):
            convs.append(_conv(f"conv{stage}_{i}", h, h, cin, cout, 3, pad=1))
        pools.append(_pool(f"pool{stage}_2x2", h, h, layers[-1][1], 2, 2))
    return {
        "name": "vgg16",
        "description": "VGG-16's 3x3/1 pad-1 convs at 224x224 (13 layers, distinct shapes once), its five 2x2/2 "
                       "max-pools and its three Dense layers.",
        "problems": distinct(convs) + pools + [
            _gemm("fc6_25088x4096", "batch", 4096, 7 * 7 * 512, note="Flatten 7*7*512 -> Dense(4096); M = batch"),
            _gemm("fc7_4096x4096", "batch", 4096, 4096, note="M = batch"),
            _gemm("fc8_4096x1000", "batch", 1000, 4096, note="M = batch"),
        ],
    }


MOBILENET_V1_DW = [(112, 32, 1), (112, 64, 2), (56, 128, 1), (56, 128, 2), (28, 256, 1), (28, 256, 2),
                   (14, 512, 1), (14, 512, 1), (14, 512, 1), (14, 512, 1), (14, 512, 1), (14, 512, 2), (7, 1024, 1)]


def mobilenet_v1() -> dict:
    convs = [_conv(f"conv_dw_{i}_{h}x{h}x{c}_s{s}", h, h, c, c, 3, stride=s, pad=1, groups=c)
             for i, (h, c, s) in enumerate(MOBILENET_V1_DW, start=1)]
    return {
        "name": "mobilenet_v1",
        "description": "MobileNet v1 (width 1.0, 224x224): its 13 depthwise 3x3 convs (groups = C, one filter per "
                       "channel), stride 1 and 2, distinct shapes once.",
        "problems": distinct(convs),
    }


def seed() -> dict:
    return {
        "name": "seed",
        "description": "The seed model's layers: 28x28x1 -> Conv2D(64, 3x3, valid) -> MaxPool 2x2 -> "
                       "Dense 10816 -> 10.",
        "cpu_batch": 8,
        "problems": seed_layers(),
    }


def gemm() -> dict:
    dense = [p for s in (seed(), vgg16(), resnet50()) for p in s["problems"] if p["kind"] == "gemm"]
    for p in dense:
        p["name"] = {"dense_10816x10": "seed_dense_10816x10", "fc_2048x1000": "resnet50_fc_2048x1000"}.get(
            p["name"], "vgg16_" + p["name"] if p["name"].startswith("fc") else p["name"])
    return {
        "name": "gemm",
        "description": "Square GEMMs C = A @ B (row-major, M = N = K) and the Dense layers of the seed model, "
                       "VGG-16 and ResNet-50 (M = batch).",
        "cpu_batch": 8,
        "problems": [_gemm(f"square_{n}", n, n, n) for n in (1024, 2048, 4096, 8192)] + dense,
    }


SUITES = {"seed": seed, "resnet50": resnet50, "vgg16": vgg16, "mobilenet_v1": mobilenet_v1, "gemm": gemm}


def build(name: str) -> dict:
    suite = SUITES[name]()
    suite.setdefault("batches", list(BATCHES))
    suite.setdefault("dtypes", list(DTYPES))
    suite.setdefault("cpu_batch", 1)
    suite["derived_by"] = "fastconv/bench/derive.py (python -m fastconv.bench.derive)"
    for p in suite["problems"]:
        p.setdefault("count", 1)
    order = ["name", "description", "derived_by", "batches", "dtypes", "cpu_batch", "problems"]
    return {k: suite[k] for k in order}


def dumps(suite: dict) -> str:
    """One problem per line: diffs of the data stay readable."""
    head = {k: v for k, v in suite.items() if k != "problems"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()] + ['  "problems": [']
    last = len(suite["problems"]) - 1
    lines += [f"    {json.dumps(p)}{',' if i < last else ''}" for i, p in enumerate(suite["problems"])]
    return "\n".join(lines + ["  ]", "}"]) + "\n"


def default_suites_dir() -> Path:
    """benchmarks/suites of the checkout this package sits in (editable installs and source trees)."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "suites"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.bench.derive", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--dir", default=None, help="suites folder (default benchmarks/suites of this checkout)")
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else default_suites_dir()
    bad = 0
    for name in SUITES:
        path, text = folder / f"{name}.json", dumps(build(name))
        if args.check:
            same = path.exists() and path.read_text() == text
            print(f"{path}: {'up to date' if same else 'DIFFERS from the derivation'}")
            bad += not same
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(build(name)['problems'])} problems)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
