"""Shape suites: load benchmarks/suites/<name>.json, validate it, and expand it into benchmark cases.

A suite is data (see fastconv/bench/derive.py for how each was derived):
    {"name": ..., "description": ..., "batches": [1, 32, 128, 256], "dtypes": ["fp32", ...],
     "cpu_batch": 1, "problems": [ {"name": ..., "kind": "conv2d" | "maxpool" | "gemm", ...}, ... ]}
conv2d:  H, W, C, K, R, S, stride [sh, sw], padding [[top, bottom], [left, right]], dilation, groups, out [P, Q]
maxpool: H, W, C, pool [R, S], stride, padding, out [P, Q]
gemm:    M (an int, or "batch"), N, K        C[M, N] = A[M, K] @ B[K, N]
Optional on each: count (how often the network has it), aliases, note.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..shapes import conv_output_hw
from . import roofline as rl
# the derivation writes the suite files and stands in for them outside a source checkout
from .derive import SUITES, build, default_suites_dir

SUITES_ENV = "FASTCONV_SUITES_DIR"
KINDS = ("conv2d", "maxpool", "gemm")
OPS = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "maxpool", "gemm", "train_step")
OP_KIND = {"conv2d_fprop": "conv2d", "conv2d_dgrad": "conv2d", "conv2d_wgrad": "conv2d", "maxpool": "maxpool",
           "gemm": "gemm"}


class SuiteError(ValueError):
    """A suite file that does not describe valid problems."""


def suites_dir() -> Path:
    env = os.environ.get(SUITES_ENV)
    return Path(env) if env else default_suites_dir()


def available_suites() -> list[str]:
    folder = suites_dir()
    if folder.is_dir():
        return sorted(p.stem for p in folder.glob("*.json"))
    return sorted(SUITES)


@dataclass(frozen=True)
class Problem:
    name: str
    kind: str
    params: dict
    count: int = 1
    aliases: tuple = ()
    note: str | None = None

    def __getitem__(self, key):
        return self.params[key]

    @property
    def batch_free(self) -> bool:
        """A GEMM with a fixed M does not change with the batch size."""
        return self.kind == "gemm" and self.params["M"] != "batch"

    def describe(self) -> str:
        p = self.params
        if self.kind == "conv2d":
            g = f" g{p['groups']}" if p["groups"] != 1 else ""
            return (f"{p['H']}x{p['W']}x{p['C']} -> {p['out'][0]}x{p['out'][1]}x{p['K']} "
                    f"{p['R']}x{p['S']}/{p['stride'][0]}{g}")
        if self.kind == "maxpool":
            return (f"{p['H']}x{p['W']}x{p['C']} -> {p['out'][0]}x{p['out'][1]} "
                    f"{p['pool'][0]}x{p['pool'][1]}/{p['stride'][0]}")
        return f"M={p['M']} N={p['N']} K={p['K']}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    problems: tuple
    batches: tuple
    dtypes: tuple
    cpu_batch: int
    source: str

    def problem(self, name: str) -> Problem:
        for p in self.problems:
            if p.name == name or name in p.aliases:
                return p
        raise KeyError(f"suite {self.name} has no problem {name!r}; it has {[p.name for p in self.problems]}")

    def of_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]


# ---- validation --------------------------------------------------------------------------------
def _int(v, what, minimum=1):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise SuiteError(f"{what} must be an int >= {minimum}, got {v!r}")
    return v


def _pair(v, what, minimum=1):
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise SuiteError(f"{what} must be a pair [a, b], got {v!r}")
    return tuple(_int(x, what, minimum) for x in v)


def _padding(v, what):
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise SuiteError(f"{what} must be [[top, bottom], [left, right]], got {v!r}")
    return tuple(_pair(side, what, 0) for side in v)


def _check_out(params, where, kernel, dilation, what):
    try:
        out = conv_output_hw((params["H"], params["W"]), kernel, params["stride"], params["padding"], dilation, what)
    except ValueError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    if "out" in params and tuple(params["out"]) != tuple(out):
        raise SuiteError(f"{where}: out {list(params['out'])} does not match the geometry, which gives {list(out)}")
    params["out"] = list(out)


def validate_problem(raw: dict, where: str) -> Problem:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a problem must be an object, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise SuiteError(f"{where}: each problem needs a 'name' without spaces, got {name!r}")
    where = f"{where} problem {name!r}"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SuiteError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    meta = {"name", "kind", "count", "aliases", "note"}
    params = {k: v for k, v in raw.items() if k not in meta}
    if kind == "conv2d":
        allowed = {"H", "W", "C", "K", "R", "S", "stride", "padding", "dilation", "groups", "out"}
        for k in ("H", "W", "C", "K", "R", "S"):
            params[k] = _int(params.get(k), f"{where}: {k}")
        params["stride"] = _pair(params.get("stride", [1, 1]), f"{where}: stride")
        params["dilation"] = _pair(params.get("dilation", [1, 1]), f"{where}: dilation")
        params["padding"] = _padding(params.get("padding", [[0, 0], [0, 0]]), f"{where}: padding")
        params["groups"] = _int(params.get("groups", 1), f"{where}: groups")
        if params["C"] % params["groups"] or params["K"] % params["groups"]:
            raise SuiteError(f"{where}: groups={params['groups']} must divide C={params['C']} and K={params['K']}")
        _check_out(params, where, (params["R"], params["S"]), params["dilation"], "kernel")
    elif kind == "maxpool":
        allowed = {"H", "W", "C", "pool", "stride", "padding", "out"}
        for k in ("H", "W", "C"):
            params[k] = _int(params.get(k), f"{where}: {k}")
        params["pool"] = _pair(params.get("pool"), f"{where}: pool")
        params["stride"] = _pair(params.get("stride", params["pool"]), f"{where}: stride")
        params["padding"] = _padding(params.get("padding", [[0, 0], [0, 0]]), f"{where}: padding")
        for (lo, hi), k in zip(params["padding"], params["pool"]):
            if max(lo, hi) > k // 2:      # a window wholly in the padding has no maximum
                raise SuiteError(f"{where}: padding {list(params['padding'])} exceeds half the window "
                                 f"{list(params['pool'])}")
        _check_out(params, where, params["pool"], (1, 1), "pool_size")
    else:
        allowed = {"M", "N", "K"}
        if params.get("M") != "batch":
            params["M"] = _int(params.get("M"), f"{where}: M (an int or \"batch\")")
        params["N"] = _int(params.get("N"), f"{where}: N")
        params["K"] = _int(params.get("K"), f"{where}: K")
    unknown = set(params) - allowed
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {sorted(unknown)} for kind {kind}")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise SuiteError(f"{where}: aliases must be a list of names")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise SuiteError(f"{where}: note must be a string")
    return Problem(name, kind, params, _int(raw.get("count", 1), f"{where}: count"), tuple(aliases), note)


def validate_suite(data: dict, source: str = "<dict>") -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite must be a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{source}: missing 'name'")
    raw = data.get("problems")
    if not isinstance(raw, list) or not raw:
        raise SuiteError(f"{source}: 'problems' must be a non-empty list")
    problems = [validate_problem(p, f"{source}") for p in raw]
    seen = {}
    for p in problems:
        for n in (p.name,) + p.aliases:
            if n in seen:
                raise SuiteError(f"{source}: name {n!r} is used twice ({seen[n]} and {p.name})")
            seen[n] = p.name
    batches = data.get("batches", [1])
    if not isinstance(batches, list) or not batches:
        raise SuiteError(f"{source}: batches must be a non-empty list")
    batches = tuple(_int(b, f"{source}: batches") for b in batches)
    dtypes = data.get("dtypes", list(rl.DTYPES))
    if not isinstance(dtypes, list) or not dtypes or any(d not in rl.DTYPES for d in dtypes):
        raise SuiteError(f"{source}: dtypes must be a non-empty subset of {list(rl.DTYPES)}, got {dtypes!r}")
    cpu_batch = _int(data.get("cpu_batch", 1), f"{source}: cpu_batch")
    unknown = set(data) - {"name", "description", "derived_by", "batches", "dtypes", "cpu_batch", "problems"}
    if unknown:
        raise SuiteError(f"{source}: unknown top-level field(s) {sorted(unknown)}")
    return Suite(name, str(data.get("description", "")), tuple(problems), batches, tuple(dtypes), cpu_batch, source)


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (benchmarks/suites/<name>.json, or $FASTCONV_SUITES_DIR) or by path to a JSON file.
    Outside a source checkout, where that folder does not exist, the built-in derivation stands in."""
    text = str(name_or_path)
    if text.endswith(".json") or os.sep in text or "/" in text:
        path = Path(text)
    else:
        path = suites_dir() / f"{text}.json"
        if not suites_dir().is_dir():
            if text not in SUITES:
                raise SuiteError(f"unknown suite {text!r}; suites: {sorted(SUITES)}")
            return validate_suite(build(text), f"built-in derivation of {text} ({suites_dir()} not found)")
    if not path.exists():
        raise SuiteError(f"unknown suite {text!r}: {path} does not exist; suites: {available_suites()}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON ({exc})") from None
    suite = validate_suite(data, str(path))
    if path.stem != suite.name:
        raise SuiteError(f"{path}: name {suite.name!r} does not match the file name")
    return suite


def load_suites(spec: str) -> list[Suite]:
    """'resnet50', 'resnet50,vgg16' or 'all'."""
    names = available_suites() if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise SuiteError("no suite named")
    return [load_suite(n) for n in names]


# ---- cases -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One measurement: an op on one problem at one batch size and dtype, with concrete shapes."""
    suite: str
    op: str
    problem: Problem
    batch: int | None
    dtype: str
    notes: tuple = field(default=())

    @property
    def key(self) -> str:
        b = "-" if self.batch is None else self.batch
        return f"{self.suite}/{self.problem.name}/{self.op}/N{b}/{self.dtype}"

    @property
    def geometry(self) -> dict:
        """Concrete shapes: conv x (N,H,W,C), w (R,S,C/g,K), y (N,P,Q,K); pool x, y; gemm M, N, K."""
        p = self.problem.params
        if self.problem.kind == "conv2d":
            n = self.batch
            return {"x": (n, p["H"], p["W"], p["C"]), "w": (p["R"], p["S"], p["C"] // p["groups"], p["K"]),
                    "y": (n, p["out"][0], p["out"][1], p["K"]), "stride": tuple(p["stride"]),
                    "padding": tuple(tuple(s) for s in p["padding"]), "dilation": tuple(p["dilation"]),
                    "groups": p["groups"]}
        if self.problem.kind == "maxpool":
            n = self.batch
            return {"x": (n, p["H"], p["W"], p["C"]), "y": (n, p["out"][0], p["out"][1], p["C"]),
                    "pool": tuple(p["pool"]), "stride": tuple(p["stride"]),
                    "padding": tuple(tuple(s) for s in p["padding"])}
        m = self.batch if p["M"] == "batch" else p["M"]
        return {"M": m, "N": p["N"], "K": p["K"], "a": (m, p["K"]), "b": (p["K"], p["N"]), "c": (m, p["N"])}

    @property
    def inputs(self) -> dict:
        """Name -> shape of the tensors the op reads (what the input rotation replicates)."""
        g = self.geometry
        return {"conv2d_fprop": lambda: {"x": g["x"], "w": g["w"]},
                "conv2d_dgrad": lambda: {"dy": g["y"], "w": g["w"]},
                "conv2d_wgrad": lambda: {"x": g["x"], "dy": g["y"]},
                "maxpool": lambda: {"x": g["x"]},
                "gemm": lambda: {"a": g["a"], "b": g["b"]}}[self.op]()

    @property
    def output_shape(self) -> tuple:
        g = self.geometry
        return {"conv2d_fprop": g.get("y"), "conv2d_dgrad": g.get("x"), "conv2d_wgrad": g.get("w"),
                "maxpool": g.get("y"), "gemm": g.get("c")}[self.op]

    @property
    def flops(self) -> int:
        g, p = self.geometry, self.problem.params
        if self.problem.kind == "conv2d":
            n, pp, q, k = g["y"]
            return rl.conv2d_flops(n, pp, q, k, p["R"], p["S"], p["C"], p["groups"])
        if self.problem.kind == "maxpool":
            n, pp, q, c = g["y"]
            return rl.maxpool_flops(n, pp, q, c, *g["pool"])
        return rl.gemm_flops(g["M"], g["N"], g["K"])

    @property
    def bytes(self) -> int:
        g = self.geometry
        if self.problem.kind == "conv2d":
            return rl.conv2d_bytes(g["x"], g["w"], g["y"], self.dtype)
        if self.problem.kind == "maxpool":
            return rl.maxpool_bytes(g["x"], g["y"], self.dtype, argmax_bytes=1)
        return rl.gemm_bytes(g["M"], g["N"], g["K"], self.dtype)

    @property
    def input_bytes(self) -> int:
        size = rl.dtype_bytes(self.dtype)
        total = 0
        for shape in self.inputs.values():
            count = 1
            for d in shape:
                count *= d
            total += count * size
        return total

    def shape_text(self) -> str:
        return self.problem.describe() if self.batch is None else f"N={self.batch} {self.problem.describe()}"


def expand_cases(suites, ops, batches=None, dtypes=None, shapes=None, cpu=False):
    """Cases in the order op -> dtype -> batch -> suite -> problem (a --limit or a time budget keeps the
    first ones). batches/dtypes default to each suite's own (cpu: the suite's cpu_batch and fp32).
    Returns (cases, skipped) where skipped lists (what, why) for combinations that do not apply."""
    cases, skipped, seen = [], [], set()
    for op in ops:
        if op not in OP_KIND:
            raise ValueError(f"--op {op!r} is not a per-shape op; ops: {list(OP_KIND)}")
        kind = OP_KIND[op]
        all_dtypes = []
        for s in suites:
            for d in (dtypes or (["fp32"] if cpu else s.dtypes)):
                if d not in all_dtypes:
                    all_dtypes.append(d)
        for dtype in all_dtypes:
            if dtype not in rl.DTYPES:
                raise ValueError(f"--dtype must be among {list(rl.DTYPES)}, got {dtype!r}")
            if op == "maxpool" and dtype == "tf32":
                skipped.append((f"{op} tf32", "tf32 changes matrix math only; max-pool in tf32 mode is fp32"))
                continue
            all_batches = []
            for s in suites:
                for b in (batches or ([s.cpu_batch] if cpu else s.batches)):
                    if b not in all_batches:
                        all_batches.append(b)
            for batch in all_batches:
                for s in suites:
                    if batches is None and batch not in ([s.cpu_batch] if cpu else s.batches):
                        continue
                    for prob in s.of_kind(kind):
                        if shapes and prob.name not in shapes and not set(prob.aliases) & set(shapes):
                            continue
                        b = None if prob.batch_free else batch
                        key = (s.name, prob.name, op, b, dtype)
                        if key in seen:
                            continue
                        seen.add(key)
                        cases.append(Case(s.name, op, prob, b, dtype))
    if shapes:
        found = {c.problem.name for c in cases} | {a for c in cases for a in c.problem.aliases}
        missing = [s for s in shapes if s not in found]
        if missing:
            raise ValueError(f"--shape {missing} not found among the {list(ops)} problems of "
                             f"{[s.name for s in suites]}")
    return cases, skipped
