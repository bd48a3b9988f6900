"""fastconv.explain: which compute path and which kernels ran for some code, and why.

    report = fastconv.explain(lambda: model.train_on_batch(x, y))
    print(report)

Ops announce the backend they run on; the kernel launch plans (backends/plans/) announce each
launch and the reason for each choice they make (vector width, index width, tile). Nothing is
recorded outside an explain() call, so the hot path pays one attribute check.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

_local = threading.local()


@dataclass
class Event:
    kind: str        # 'op', 'kernel' or 'note'
    text: str
    detail: dict = field(default_factory=dict)


@dataclass
class Explanation:
    events: list[Event]
    result: object = None

    @property
    def kernels(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "kernel"]

    @property
    def ops(self) -> list[tuple[str, str]]:
        return [(e.text, e.detail["backend"]) for e in self.events if e.kind == "op"]

    def __str__(self):
        lines = []
        for e in self.events:
            if e.kind == "op":
                lines.append(f"{e.text}  ->  {e.detail['backend']} backend ({e.detail['why']})")
            elif e.kind == "kernel":
                lines.append(f"    kernel {e.text}  grid {e.detail['grid']} block {e.detail['block']}")
            else:
                lines.append(f"    because {e.text}")
        return "\n".join(lines) if lines else "(no fastconv ops ran)"


def active() -> bool:
    return getattr(_local, "events", None) is not None


def record(kind: str, text: str, **detail) -> None:
    events = getattr(_local, "events", None)
    if events is not None:
        events.append(Event(kind, text, detail))


def note(text: str) -> None:
    """A reason for a choice a launch plan made (recorded only inside explain())."""
    record("note", text)


@contextlib.contextmanager
def tracing():
    previous = getattr(_local, "events", None)
    _local.events = []
    try:
        yield _local.events
    finally:
        _local.events = previous


def explain(fn, *args, **kwargs) -> Explanation:
    """Run fn(*args, **kwargs) and report every op's backend and every kernel launch, with reasons."""
    with tracing() as events:
        result = fn(*args, **kwargs)
    return Explanation(list(events), result)


class TracedBackend:
    """Wraps a backend module so that each op call is recorded before it runs."""

    def __init__(self, module, name: str, why: str):
        self._module, self._name, self._why = module, name, why

    def __getattr__(self, op):
        fn = getattr(self._module, op)

        def call(*args, **kwargs):
            shapes = [tuple(a.shape) for a in args if hasattr(a, "shape")]
            record("op", op, backend=self._name, why=self._why, shapes=shapes)
            return fn(*args, **kwargs)
        return call


def traced_launch(launch):
    """Wrap an executor's launch(kernel, grid, block, args, ...) to record each launch."""
    def call(kernel, grid, block, *args, **kwargs):
        record("kernel", kernel, grid=tuple(grid), block=tuple(block))
        return launch(kernel, grid, block, *args, **kwargs)
    return call
