"""NVTX ranges for profilers (Nsight Compute / Systems): one outer push/pop range named `fastconv`
holds every range the harness opens, so `ncu --nvtx --nvtx-include fastconv/` selects exactly the
work of a profiled region. (torch.cuda.nvtx and cupy.cuda.nvtx push ranges in the default NVTX
domain and have no domain API; the outer range plays the domain's part.) On the CPU every call is
a no-op, apart from the record of names kept for tests.
"""
from __future__ import annotations

import contextlib

DOMAIN = "fastconv"


class Nvtx:
    def __init__(self, enabled: bool):
        self.backend = "off (no GPU)"
        self._push = self._pop = None
        self.pushed: list[str] = []          # every name pushed, in order (for tests and reports)
        if not enabled:
            return
        try:
            import torch
            if torch.cuda.is_available():
                self._push, self._pop = torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
                self.backend = "torch.cuda.nvtx"
                return
        except ImportError:
            pass
        try:
            from cupy.cuda import nvtx as cnvtx
            self._push, self._pop, self.backend = cnvtx.RangePush, cnvtx.RangePop, "cupy.cuda.nvtx"
        except Exception:
            self.backend = "off (neither torch.cuda.nvtx nor cupy.cuda.nvtx is usable)"

    def push(self, name: str) -> None:
        self.pushed.append(name)
        if self._push:
            self._push(name)

    def pop(self) -> None:
        if self._pop:
            self._pop()

    @contextlib.contextmanager
    def range(self, name: str):
        self.push(name)
        try:
            yield
        finally:
            self.pop()

    @contextlib.contextmanager
    def domain(self):
        """The outer `fastconv` range."""
        with self.range(DOMAIN):
            yield
