"""Where the kernel sources are: the one place jit (NVRTC) and the compile checks look for csrc/.

An installed wheel carries them as fastconv/_csrc (setup.py's BuildPyWithKernelSources copies the headers in), so
the jit backend works after a plain `pip install .`; a source checkout or an editable install reads
the repository's csrc/ directly, so edits take effect without reinstalling.
"""
from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parents[1] / "_csrc"
CHECKOUT = Path(__file__).resolve().parents[2] / "csrc"


def csrc_dir() -> Path:
    """The checkout's csrc/ when present (editable installs, tests), else the packaged copy."""
    return CHECKOUT if (CHECKOUT / "launch" / "all_kernels.h").exists() else PACKAGED
