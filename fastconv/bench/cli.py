"""Command-line wiring of `fastconv bench` and `fastconv profile`.

The main CLI adds both with two lines:
    from .bench.cli import add_bench_parser, add_profile_parser
    add_bench_parser(sub); add_profile_parser(sub)
Each subcommand sets `func` to a function of the parsed args returning an int exit code:
0 ok, 1 a measurement failed (an error, or fastconv's output disagreeing with the baseline), 2 bad arguments.
Standalone: `python -m fastconv.bench [bench] ARGS` and `python -m fastconv.bench profile ARGS`.
"""
from __future__ import annotations

import argparse
import sys

OPS_HELP = ("conv2d_fprop | conv2d_dgrad | conv2d_wgrad | maxpool | gemm | train_step | input_pipeline "
            "(comma-separate several per-shape ops)")


def _positive_int(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text}")
    return v


def _nonnegative_int(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text}")
    return v


def _positive_float(text):
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def _guard(fn):
    """Argument and data errors print one line and return 2, like the rest of the fastconv CLI."""
    def run(args):
        try:
            return fn(args)
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"fastconv {args.command}: error: {msg}", file=sys.stderr)
            return 2
    return run


def _bench(args) -> int:
    from .bench import run_bench
    if args.list:
        return _list_suites()
    return run_bench(args)


def _profile(args) -> int:
    if args.emulated:
        from .profile_emulated import run_emulated_profile
        return run_emulated_profile(args)
    for opt in ("lines", "kernel", "convs", "image_size", "arch", "no_static"):
        if getattr(args, opt):
            raise ValueError(f"--{opt.replace('_', '-')} applies to --emulated only")
    from .profile import run_profile
    return run_profile(args)


def _list_suites() -> int:
    from .suites import available_suites, load_suite
    for name in available_suites():
        s = load_suite(name)
        print(f"{s.name}: {s.description}")
        print(f"  batches {list(s.batches)} (cpu {s.cpu_batch}), dtypes {list(s.dtypes)}; {s.source}")
        for p in s.problems:
            extra = f" x{p.count}" if p.count > 1 else ""
            print(f"  {p.kind:8s} {p.name:34s} {p.describe()}{extra}")
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="time fastconv's ops against cuDNN/cuBLAS (GPU) or PyTorch CPU, per shape, with the roofline",
        description="Time fastconv's ops against cuDNN / cuBLAS through PyTorch on a GPU (or the NumPy reference "
                    "against PyTorch CPU without one), shape by shape, with FLOP/s, GB/s and % of roofline.")
    p.add_argument("--suite", default=None,
                   help="shape suite(s): seed, resnet50, vgg16, mobilenet_v1, gemm, comma-separated, or all "
                        "(default: resnet50 for convs, all for maxpool, gemm for gemm)")
    p.add_argument("--op", default=None, help=OPS_HELP + " (default conv2d_fprop)")
    p.add_argument("--shape", default=None, help="only these problem names (comma-separated)")
    p.add_argument("--dtype", default=None,
                   help="fp32, tf32, fp16, bf16, comma-separated (default: the suite's; CPU: fp32)")
    p.add_argument("--batch", default=None, help="batch size(s), comma-separated (default: the suite's; CPU: small)")
    p.add_argument("--baseline", default="auto", choices=["auto", "cudnn", "cublas", "torch", "none"],
                   help="the comparison (PyTorch: cuDNN for convs, cuBLAS for GEMMs; CPU: PyTorch CPU)")
    p.add_argument("--model", default=None, help="model(s) for --op train_step: seed, resnet18, comma-separated")
    p.add_argument("--json", default=None, metavar="PATH", help="write every figure and the environment as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="write a PNG: ratio per shape and the roofline")
    p.add_argument("--repeats", type=_positive_int, default=None, help="timed samples per implementation")
    p.add_argument("--limit", type=_nonnegative_int, default=None, help="run the first N shapes of each op (0: all; CPU default 6)")
    p.add_argument("--time-budget", type=_positive_float, default=None,
                   help="stop starting new cases after this many seconds (CPU default 50)")
    p.add_argument("--max-gflop", type=_positive_float, default=None,
                   help="skip cases above this many GFLOP per call (CPU default 20)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="auto: gpu when PyTorch sees one")
    p.add_argument("--threads", type=_nonnegative_int, default=None,
                   help="CPU mode: threads for PyTorch and NumPy's BLAS each (default 1; 0: the libraries' defaults)")
    p.add_argument("--ceilings", default=None, metavar="JSON",
                   help="reuse ceilings from a bench JSON instead of measuring")
    p.add_argument("--ceiling-n", type=_positive_int, default=None, help="matmul size for the compute ceiling")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="train_step: also time torch.compile (default: the seed model on the GPU, max-autotune)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--images", type=_positive_int, default=2000, help="input_pipeline: JPEGs to generate (default 2000)")
    p.add_argument("--data", default=None, help="input_pipeline: folder for the generated JPEGs (kept and reused)")
    p.add_argument("--workers", type=_nonnegative_int, default=None, help="input_pipeline: worker processes (default: all cores)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--list", action="store_true", help="list the suites and their problems, then exit")
    p.set_defaults(func=_guard(_bench), command="bench")
    return p


def add_profile_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "profile", help="run one op, layer or model step under NVTX ranges; per-op and per-kernel time vs roofline",
        description="Run one op (--op), one layer forward+backward (--layer) or one model training step (--model) "
                    "under NVTX ranges in a 'fastconv' range and report per op (and per kernel on a GPU): time, "
                    "launches, registers, shared memory, spills, occupancy, FLOP/s and GB/s against the roofline.")
    p.add_argument("--op", default=None, choices=["conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "maxpool", "gemm"])
    p.add_argument("--layer", default=None, metavar="SHAPE", help="a problem name of a suite (e.g. res2_3x3)")
    p.add_argument("--model", default=None, help="seed")
    p.add_argument("--suite", default=None,
                   help="suite of --shape/--layer (default: seed, or all when a shape is named)")
    p.add_argument("--shape", default=None, help="problem name for --op (default: the suite's first)")
    p.add_argument("--batch", default=None, help="batch size")
    p.add_argument("--dtype", default=None, choices=["fp32", "tf32", "fp16", "bf16"])
    p.add_argument("--backend", default="fastconv", choices=["fastconv", "torch"],
                   help="profile fastconv (default) or the PyTorch baseline")
    p.add_argument("--steps", type=_positive_int, default=5, help="profiled iterations")
    p.add_argument("--warmup", type=_nonnegative_int, default=2, help="iterations before profiling")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--threads", type=_nonnegative_int, default=None, help="CPU: threads for PyTorch and NumPy's BLAS (default 1; 0: the libraries' defaults)")
    p.add_argument("--ceilings", default=None, metavar="JSON", help="reuse ceilings from a bench JSON")
    p.add_argument("--json", default=None, metavar="PATH", help="write the per-op and per-kernel report as JSON")
    p.add_argument("--ncu", action="store_true", help="print the Nsight Compute command for this target")
    p.add_argument("--run", action="store_true", help="with --ncu: run it (needs a GPU and ncu on PATH)")
    p.add_argument("--ncu-out", default=None, help="ncu report name (default fastconv-profile; '-': print to stdout)")
    p.add_argument("--ncu-set", default="full", help="ncu --set (default full; 'basic' is quicker)")
    p.add_argument("--ncu-launches", type=_positive_int, default=20, help="ncu --launch-count")
    p.add_argument("--plain", action="store_true",
                   help="NVTX ranges only, no PyTorch profiler (for running under ncu or nsys)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    e = p.add_argument_group("--emulated: Nsight Compute's memory counters from the CPU emulator (no GPU)")
    e.add_argument("--emulated", action="store_true",
                   help="run --op or --model once through the emulated backend with counters: per kernel global "
                        "sectors/requests, shared wavefronts and bank conflicts, per op bytes moved vs the minimum, "
                        "per target registers/shared memory/occupancy (fastconv/bench/profile_emulated.py)")
    e.add_argument("--lines", action="store_true", help="--emulated: also the per-source-line table")
    e.add_argument("--kernel", default=None, metavar="REGEX", help="--emulated: only the kernels matching REGEX")
    e.add_argument("--convs", action="store_true",
                   help="--emulated --model: the model's distinct convs forward and backward, not a whole step "
                        "(for resnet18: --batch 1 --image-size 8)")
    e.add_argument("--image-size", type=_positive_int, default=None,
                   help="--emulated --model: square inputs of this size (e.g. 8 for resnet18)")
    e.add_argument("--arch", default=None, help="--emulated: targets of the static report, comma-separated "
                                                  "(default sm_80,sm_90a)")
    e.add_argument("--no-static", action="store_true", help="--emulated: skip the static report (needs nvcc)")
    p.set_defaults(func=_guard(_profile), command="profile")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastconv.bench",
                                     description="fastconv benchmarks and profiling (also `fastconv bench|profile`)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    add_profile_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("bench", "profile", "-h", "--help"):
        argv = ["bench"] + argv
    args = build_parser().parse_args(argv)
    return args.func(args)
