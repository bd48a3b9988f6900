"""The counters ratchet: every plan kernel's emulated memory counters (scripts/record_counters.py) against
benchmarks/counters/emulated.json. Fails when a kernel's global sector efficiency drops or its shared-memory
bank-conflict wavefronts rise, naming the kernel, its sites and the numbers; improvements pass with a
warning that the file can be tightened (python scripts/record_counters.py --update)."""
import sys
import warnings
from pathlib import Path

import pytest

from fastconv import emulator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import record_counters  # noqa: E402

pytestmark = pytest.mark.skipif(not emulator.available(), reason="fastconv._emu is not built")


def test_every_emulated_plan_kernel_is_recorded():
    """A kernel added to the plans must be added to the recorder's problems (and the file)."""
    from fastconv.backends.jit import all_kernel_names
    from fastconv.backends.plans.gemm import sm90a_kernel_names
    registered = set(emulator.kernels())
    recorded = set(record_counters.load())
    missing = [k for k in all_kernel_names() + sm90a_kernel_names() if k in registered and k not in recorded]
    assert not missing, f"{len(missing)} plan kernels have no recorded counters, e.g. {missing[:5]}: add a problem " \
                        f"that launches them to scripts/record_counters.py and run {record_counters.UPDATE}"


@pytest.mark.slow   # ~20 s: every kernel once in the instrumented build (built on first use: minutes)
def test_counters_are_no_worse_than_recorded():
    bad, better = record_counters.compare(record_counters.load(), record_counters.record())
    if better:
        warnings.warn(f"{len(better)} kernel counters improved; tighten the file with {record_counters.UPDATE}:\n"
                      + "\n".join(better[:20]))
    assert not bad, (f"{len(bad)} kernel counters got worse than benchmarks/counters/emulated.json (if on purpose, "
                     f"run {record_counters.UPDATE} and say why in the commit):\n" + "\n".join(bad[:20]))


def _entry(eff_bytes, sectors, wavefronts=0, ideal=0, site="conv/x.h:3"):
    return {"global load": {"requests": 1, "sectors": sectors, "bytes": eff_bytes},
            "shared store": {"requests": 1, "wavefronts": wavefronts, "ideal_wavefronts": ideal},
            "sites": {f"{site} global load": [1, sectors, eff_bytes], f"{site} shared store": [1, wavefronts, ideal]}}


def test_compare_flags_worse_sectors_and_conflicts_and_passes_improvements():
    old = {"k": _entry(128, 4, 8, 4)}
    bad, better = record_counters.compare(old, {"k": _entry(128, 8, 8, 4)})        # twice the sectors
    assert len(bad) == 1 and better == []
    assert "k: global load sector efficiency got worse" in bad[0] and "efficiency 50.0%" in bad[0]
    assert "conv/x.h:3: 8 sectors for 128 bytes (recorded: 4 sectors for 128 bytes)" in bad[0]
    bad, _ = record_counters.compare(old, {"k": _entry(128, 4, 12, 4)})             # more conflict wavefronts
    assert len(bad) == 1 and "shared store bank-conflict wavefronts got worse" in bad[0] and "8 from bank" in bad[0]
    bad, better = record_counters.compare(old, {"k": _entry(128, 4, 4, 4)})         # conflicts gone
    assert bad == [] and len(better) == 1 and "improved" in better[0]
    bad, better = record_counters.compare(old, old)
    assert bad == [] and better == []
    bad, _ = record_counters.compare({"k": _entry(400, 20)}, {"k": _entry(400, 21)})   # 4.8% less: alignment noise
    assert bad == []
    bad, _ = record_counters.compare({"k": _entry(400, 20)}, {"k": _entry(400, 22)})   # 9% less: worse
    assert len(bad) == 1


def test_compare_flags_unrecorded_and_vanished_kernels():
    bad, _ = record_counters.compare({"old": _entry(128, 4)}, {"new": _entry(128, 4)})
    assert any("new: launched but not recorded" in b for b in bad)
    assert any("old: recorded, but no problem launched it" in b for b in bad)
    # a category the record lacks counts as perfect: a new conflicted shared store is worse
    entry = _entry(128, 4, 8, 4)
    del entry["shared store"]
    bad, _ = record_counters.compare({"k": entry}, {"k": _entry(128, 4, 8, 4)})
    assert len(bad) == 1 and "not recorded" in bad[0]
