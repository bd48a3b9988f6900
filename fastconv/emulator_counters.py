"""Per-kernel and per-line totals of the emulator's memory counters, named by Nsight Compute metric.

emulator.profile() returns one launch's counters per load/store site; a model step launches many
kernels, some many times. kernel_counters() sums the launches of each kernel into one row, with the
derived ratios (sectors per request, sector efficiency, bank-conflict wavefronts) and the ncu metric
each field stands for (METRICS), so that the CLI (`fastconv profile --emulated`), the committed
counters file and benchmarks/gpu_check.sh's ncu comparison all speak of the same numbers:

    launches = [("fc::copy<float>", emulator.profile("fc::copy<float>", 4, 256, args)), ...]
    rows = kernel_counters(launches)          # {kernel: {"global_ld_sectors": ..., ...}}
    print(format_kernel_table(rows))
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

# Our field -> the Nsight Compute metric it corresponds to (ncu --metrics takes these names).
# Requests of global memory are L1TEX requests; of shared memory, executed warp-level instructions.
METRICS = {
    "global_ld_requests": "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "global_ld_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "global_ld_efficiency": "smsp__sass_average_data_bytes_per_sector_mem_global_op_ld.pct",
    "global_st_requests": "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
    "global_st_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "global_st_efficiency": "smsp__sass_average_data_bytes_per_sector_mem_global_op_st.pct",
    "shared_ld_requests": "smsp__inst_executed_op_shared_ld.sum",
    "shared_ld_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "shared_ld_conflicts": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "shared_st_requests": "smsp__inst_executed_op_shared_st.sum",
    "shared_st_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "shared_st_conflicts": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
}
# Summed as counted; the ratios and conflicts are derived from them (never summed).
_SUMMED = ("requests", "lanes", "bytes", "sectors", "wavefronts", "ideal_wavefronts")
_SPACE_OP = {("global", "load"): "global_ld", ("global", "store"): "global_st",
             ("shared", "load"): "shared_ld", ("shared", "store"): "shared_st"}
SECTOR_BYTES = 32


def _check_launches(launches) -> list[tuple[str, Sequence[Mapping]]]:
    if isinstance(launches, (str, bytes, Mapping)) or not isinstance(launches, Iterable):
        raise TypeError("launches must be an iterable of (kernel name, sites) pairs, sites as emulator.profile() "
                        f"returns them; got {type(launches).__name__}")
    out = []
    for i, item in enumerate(launches):
        if hasattr(item, "kernel") and hasattr(item, "sites"):   # an emulator.Launch
            item = (item.kernel, item.sites)
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"launches[{i}] must be a (kernel name, sites) pair, got {item!r:.80}")
        for s in item[1]:
            if (s.get("space"), s.get("op")) not in _SPACE_OP and s.get("space") != "instruction":
                raise ValueError(f"launches[{i}]: a site needs space 'global'/'shared' and op 'load'/'store' "
                                 f"(or space 'instruction'), got {s!r:.120}")
        out.append((item[0], item[1]))
    return out


def _empty() -> dict:
    row = {"launches": 0, "instructions": {}}
    for prefix in _SPACE_OP.values():
        own = ("sectors",) if prefix.startswith("global") else ("wavefronts", "ideal_wavefronts")
        row.update({f"{prefix}_{field}": 0 for field in ("requests", "lanes", "bytes", *own)})
    return row


def _add(row: dict, site: Mapping) -> None:
    if site["space"] == "instruction":
        row["instructions"][site["op"]] = row["instructions"].get(site["op"], 0) + int(site["requests"])
        return
    prefix = _SPACE_OP[(site["space"], site["op"])]
    for field in _SUMMED:
        key = f"{prefix}_{field}"
        if key in row:
            row[key] += int(site.get(field, 0))


def _derive(row: dict) -> dict:
    """Adds the ratios: sectors per request and efficiency (bytes requested / bytes moved) for global
    memory, wavefronts per request and conflict wavefronts (beyond one per 128-byte phase) for shared."""
    for p in ("global_ld", "global_st"):
        req, sec = row[f"{p}_requests"], row[f"{p}_sectors"]
        row[f"{p}_bytes_moved"] = SECTOR_BYTES * sec
        row[f"{p}_sectors_per_request"] = sec / req if req else None
        row[f"{p}_efficiency"] = row[f"{p}_bytes"] / (SECTOR_BYTES * sec) if sec else None
    for p in ("shared_ld", "shared_st"):
        req = row[f"{p}_requests"]
        row[f"{p}_conflicts"] = row[f"{p}_wavefronts"] - row[f"{p}_ideal_wavefronts"]
        row[f"{p}_wavefronts_per_request"] = row[f"{p}_wavefronts"] / req if req else None
    return row


def kernel_counters(launches: Iterable[tuple[str, Sequence[Mapping]]]) -> dict[str, dict]:
    """{kernel name: counters summed over its launches}, in order of first launch.

    launches: (kernel name, sites) pairs, sites as emulator.profile() returns them for one launch,
    or the emulator.Launch records that emulator.counting() collects.
    Each row has `launches`; per space and op (global_ld, global_st, shared_ld, shared_st):
    `_requests`, `_lanes`, `_bytes` (requested by the lanes); global: `_sectors`, `_bytes_moved`
    (sectors x 32), `_sectors_per_request`, `_efficiency` (bytes / bytes moved, 0..1; None without
    sectors); shared: `_wavefronts`, `_ideal_wavefronts`, `_conflicts` (the excess: bank conflicts),
    `_wavefronts_per_request`; `instructions`: {kind: executed warp-level instructions} (warp
    collectives by name, `__syncthreads` once per warp). METRICS names the Nsight Compute metric of
    each memory field.
    """
    rows: dict[str, dict] = {}
    for name, sites in _check_launches(launches):
        row = rows.setdefault(name, _empty())
        row["launches"] += 1
        for s in sites:
            _add(row, s)
    return {name: _derive(row) for name, row in rows.items()}


def line_counters(launches: Iterable[tuple[str, Sequence[Mapping]]]) -> list[dict]:
    """One row per (kernel, site, space, op), summed over the kernel's launches: the per-source-line
    view (site is file:line where the build has line tables). Rows carry the profile() fields plus
    the derived ratios of kernel_counters for their space and op."""
    rows: dict[tuple, dict] = {}
    for name, sites in _check_launches(launches):
        for s in sites:
            if s["space"] == "instruction":
                continue
            key = (name, s["site"], s["space"], s["op"])
            row = rows.setdefault(key, {"kernel": name, "site": s["site"], "space": s["space"], "op": s["op"],
                                        **{f: 0 for f in _SUMMED}})
            for f in _SUMMED:
                row[f] += int(s.get(f, 0))
    out = []
    for row in rows.values():
        req = row["requests"]
        if row["space"] == "global":
            row["sectors_per_request"] = row["sectors"] / req if req else None
            row["efficiency"] = row["bytes"] / (SECTOR_BYTES * row["sectors"]) if row["sectors"] else None
        else:
            row["conflicts"] = row["wavefronts"] - row["ideal_wavefronts"]
            row["wavefronts_per_request"] = row["wavefronts"] / req if req else None
        out.append(row)
    return out


def _fmt(v, spec=".2f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def format_table(rows: list[tuple], head: tuple, metrics: tuple | None = None) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    lines = [fmt(head), "-" * len(fmt(head))]
    lines += [fmt(r).rstrip() for r in rows]
    if metrics:
        lines.append("")
        lines += [f"  {h}: {m}" for h, m in zip(head, metrics) if m]
    return "\n".join(lines)


KERNEL_COLUMNS = (   # (heading, field, formatter, Nsight Compute metric or None)
    ("launches", "launches", str, None),
    ("gld req", "global_ld_requests", str, METRICS["global_ld_requests"]),
    ("gld sect", "global_ld_sectors", str, METRICS["global_ld_sectors"]),
    ("sect/req", "global_ld_sectors_per_request", _fmt, None),
    ("gld eff", "global_ld_efficiency", _pct, METRICS["global_ld_efficiency"]),
    ("gst req", "global_st_requests", str, METRICS["global_st_requests"]),
    ("gst sect", "global_st_sectors", str, METRICS["global_st_sectors"]),
    ("gst eff", "global_st_efficiency", _pct, METRICS["global_st_efficiency"]),
    ("sld req", "shared_ld_requests", str, METRICS["shared_ld_requests"]),
    ("sld wavef", "shared_ld_wavefronts", str, METRICS["shared_ld_wavefronts"]),
    ("sld confl", "shared_ld_conflicts", str, METRICS["shared_ld_conflicts"]),
    ("sst req", "shared_st_requests", str, METRICS["shared_st_requests"]),
    ("sst wavef", "shared_st_wavefronts", str, METRICS["shared_st_wavefronts"]),
    ("sst confl", "shared_st_conflicts", str, METRICS["shared_st_conflicts"]),
)


def format_kernel_table(rows: Mapping[str, Mapping], name_width: int = 80) -> str:
    """kernel_counters() as a table, one row per kernel, with the ncu metric of each column below it,
    then the executed warp-level instructions per kernel."""
    head = ("kernel", *(c[0] for c in KERNEL_COLUMNS))
    body = []
    for name, r in rows.items():
        short = name if len(name) <= name_width else name[:name_width - 3] + "..."
        body.append((short, *(fmt(r[field]) for _, field, fmt, _ in KERNEL_COLUMNS)))
    text = format_table(body, head, (None, *(c[3] for c in KERNEL_COLUMNS)))
    counted = [(name, r["instructions"]) for name, r in rows.items() if r.get("instructions")]
    if counted:
        text += ("\n\nexecuted warp-level instructions (warp collectives by name, __syncthreads once per warp; "
                 "ncu: Instruction Statistics, SASS SHFL/VOTE/HMMA/LDSM/BAR):\n"
                 + "\n".join(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(i.items())) for name, i in counted))
    return text


def _short_site(site: str) -> str:
    """'/path/to/csrc/<file>:40 (in void fc::k<...>(...))' -> 'csrc/<file>:40' (the kernel has its column)."""
    where = site.split(" (in ", 1)[0]
    i = where.rfind("/csrc/")
    return where[i + 1:] if i >= 0 else where


def format_line_table(rows: Sequence[Mapping], name_width: int = 40) -> str:
    """line_counters() as a table: per kernel and source line, requests, sectors per request and
    efficiency (global), wavefronts per request and conflict wavefronts (shared)."""
    head = ("kernel", "site", "space", "op", "requests", "sectors/req", "efficiency", "wavefronts/req", "conflicts")
    body = []
    for r in rows:
        name = r["kernel"] if len(r["kernel"]) <= name_width else r["kernel"][:name_width - 3] + "..."
        g = r["space"] == "global"
        body.append((name, _short_site(r["site"]), r["space"], r["op"], r["requests"],
                     _fmt(r["sectors_per_request"]) if g else "", _pct(r["efficiency"]) if g else "",
                     "" if g else _fmt(r["wavefronts_per_request"]), "" if g else r["conflicts"]))
    return format_table(body, head)
