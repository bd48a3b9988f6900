"""convert(model): swap every supported torch module for its fastconv.torch drop-in."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import nn

from . import _bridge as br
from . import _cuda
from .modules import SWAPS, conv2d_unsupported, max_pool2d_unsupported

__all__ = ["convert", "ConversionReport"]

# torch modules with heavy compute that fastconv.torch has no drop-in for: listed in the report.
_NO_EQUIVALENT_MODULES = ("torch.nn.modules.conv", "torch.nn.modules.pooling", "torch.nn.modules.linear")
_HARMLESS = (nn.Identity, nn.Flatten, nn.Unflatten)


@dataclass
class ConversionReport:
    """What convert() did. Entries are (qualified name, module type, reason); the root module's
    name is ''. `model` is the converted model (the argument itself when inplace=True)."""
    swapped: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        lines = [f"fastconv.torch.convert: swapped {len(self.swapped)} module(s), skipped {len(self.skipped)}"]
        for title, rows in (("swapped", self.swapped), ("skipped", self.skipped)):
            if rows:
                lines.append(f"  {title}:")
                width = max(len(name or "<root>") for name, _, _ in rows)
                for name, kind, reason in rows:
                    lines.append(f"    {name or '<root>':<{width}}  {kind}: {reason}")
        return "\n".join(lines)


def _type_name(m: nn.Module) -> str:
    t = type(m)
    mod = t.__module__
    if mod.startswith("torch.nn.modules"):
        mod = "torch.nn"
    return f"{mod}.{t.__qualname__}"


def _why_not(module: nn.Module) -> str | None:
    """Why this exact nn.Conv2d / nn.MaxPool2d / nn.Linear cannot run on fastconv, or None."""
    if isinstance(module, nn.Conv2d):
        why = conv2d_unsupported(module.padding_mode)
        if why:
            return why
    if isinstance(module, nn.MaxPool2d):
        why = max_pool2d_unsupported(module.dilation)
        if why:
            return why
    tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    for t in tensors:
        if t.dtype not in br.FLOAT_DTYPES:
            return f"dtype {t.dtype} is not supported (fastconv runs torch.float32 and torch.float64)"
    devices = {t.device.type for t in tensors}
    if "cuda" in devices:
        ok, reason = _cuda.kernels_status()
        if not ok:
            return f"on CUDA, but the fastconv CUDA kernels are not available ({reason})"
    other = devices - {"cpu", "cuda", "meta"}
    if other:
        return f"device {sorted(other)[0]!r} has no fastconv backend (cpu and cuda only)"
    return None


def convert(model: nn.Module, inplace: bool = True, strict: bool = False) -> ConversionReport:
    """Swap every nn.Conv2d, nn.MaxPool2d and nn.Linear in `model` (the root included) for
    fastconv.torch.Conv2d / MaxPool2d / Linear.

    The swap changes the module's class in place, so the module objects, their Parameter objects,
    buffers, hooks, train/eval mode and any sharing of one module between parents are kept as
    they are; optimizers built before convert() keep working. With inplace=False the model is
    deep-copied first (report.model is the copy). Modules that cannot run on fastconv (e.g.
    padding_mode='reflect', float16, MaxPool2d with dilation, a subclass with its own forward) are
    left as they are and listed in report.skipped with the reason; so are other torch conv /
    pooling / linear layers fastconv has no drop-in for. strict=True raises ValueError instead of
    skipping a module of a supported type.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastconv.torch.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(model=model)
    targets = tuple(SWAPS.values())
    plan, refused = [], []
    for name, module in model.named_modules():
        kind = _type_name(module)
        if type(module) in targets:
            report.skipped.append((name, kind, "already a fastconv.torch module"))
            continue
        target = SWAPS.get(type(module))
        if target is not None:
            why = _why_not(module)
            if why is None:
                plan.append((module, target))
                report.swapped.append((name, kind, f"-> fastconv.torch.{target.__name__}"))
                continue
            refused.append((name, kind, why))
            report.skipped.append(refused[-1])
        elif isinstance(module, tuple(SWAPS)):
            base = next(b.__name__ for b in SWAPS if isinstance(module, b))
            refused.append((name, kind, f"a subclass of torch.nn.{base} (its forward or parameters may "
                                        f"differ); only exact torch.nn.{base} modules are swapped"))
            report.skipped.append(refused[-1])
        elif type(module).__module__ in _NO_EQUIVALENT_MODULES and not isinstance(module, _HARMLESS):
            report.skipped.append((name, kind, "no fastconv.torch equivalent; stays on torch"))
    if strict and refused:
        listing = "; ".join(f"{n or '<root>'} ({k}): {why}" for n, k, why in refused)
        raise ValueError(f"fastconv.torch.convert(strict=True) cannot swap {len(refused)} module(s), "
                         f"nothing was changed: {listing}")
    for module, target in plan:      # only now, so strict=True leaves the model untouched on error
        module.__class__ = target
    return report
