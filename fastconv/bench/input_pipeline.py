"""`fastconv bench --op input_pipeline`: images/s of decode + RandomResizedCrop(224) + flip + batch, fastconv's
ImageLoader against torchvision's ImageFolder + DataLoader with the same transforms, in one run, same cores.

The data set is generated once (a folder of JPEGs of ImageNet-like sizes, about 500x375, quality 90, photo-like
content) and reused from --data. Both pipelines produce uint8 batches (torchvision: PILToTensor, so neither
pays for a float conversion the other skips). Each runs one whole epoch, worker start-up included, first with
every decode in the main process, then with --workers processes. Two rates: images per wall-clock second,
and images per CPU-second (user + system time of the process and its reaped workers: the per-core rate,
which a machine shared with other jobs does not distort the way it distorts wall time). Before timing,
the two transforms are checked to give the same pixels (within 1) for the same crop.
"""
from __future__ import annotations

import json
import os
import resource
import time

import numpy as np

from .._checks import check_int

# what one H200 would have to be fed to train ResNet-50 at full speed: A100 AMP 2,470 img/s with cuDNN
# (NVIDIA DeepLearningExamples); H100/H200 run ~1.5-2x an A100 on this model (MLPerf), so ~3,700-5,000 img/s
H200_RESNET50_IMAGES_PER_SECOND = (3700, 5000)


def make_image_folder(root: str, count: int, classes: int = 10, seed: int = 0) -> str:
    """`count` JPEGs (quality 90) of about 500x375 in `classes` class folders; kept if already complete."""
    from PIL import Image
    marker = os.path.join(root, f".complete-{count}-{classes}-{seed}")
    if os.path.exists(marker):
        return root
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, f"class{i % classes:03d}")
        os.makedirs(folder, exist_ok=True)
        w, h = (500, 375) if rng.random() < 0.7 else (375, 500)   # ImageNet: mostly landscape
        w, h = w + int(rng.integers(-40, 41)), h + int(rng.integers(-30, 31))
        Image.fromarray(_photo_like(rng, h, w)).save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
    open(marker, "w").close()
    return root


def _photo_like(rng, h, w):
    """Smooth colour fields plus edges and grain: JPEG files of a photo's size (~60-120 kB at 500x375)."""
    small = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    from PIL import Image
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.int16)
    grain = rng.normal(0, 12, (h, w, 1)).astype(np.int16)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def _check_same_pixels(root):
    import torchvision.transforms.functional as TF
    from PIL import Image

    from ..data.images import ImageFolder, RandomResizedCrop
    path = ImageFolder(root).paths[0]
    with open(path, "rb") as f:
        data = f.read()
    t = RandomResizedCrop(224, flip=0.0, reduced_decode=False)
    image = Image.open(path).convert("RGB")
    params = t.get_params(*image.size, np.random.default_rng(0))
    ours = t(data, np.random.default_rng(0), path)
    theirs = np.asarray(TF.resized_crop(image, *params, [224, 224]))
    diff = int(np.abs(ours.astype(np.int16) - theirs).max())
    if diff > 1:
        raise RuntimeError(f"fastconv's RandomResizedCrop differs from torchvision's by {diff} on {path}")
    return diff


def _cpu_seconds():
    """CPU time of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run):
    """(images per wall second, images per CPU-second) of run() -> images; run must reap its workers."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    count = run()
    return count / (time.perf_counter() - wall), count / (_cpu_seconds() - cpu)


def _time_fastconv(root, workers, batch, seed):
    from ..data.images import ImageFolder, ImageLoader, RandomResizedCrop

    def run():
        with ImageLoader(ImageFolder(root), RandomResizedCrop(224), batch_size=batch, seed=seed,
                         workers=workers) as loader:   # close() joins the workers
            return sum(len(x) for x, _ in loader.batches(0))
    return _timed(run)


def _time_torchvision(root, workers, batch, seed):
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder
    torch.manual_seed(seed)
    threads = torch.get_num_threads()

    def run():
        dataset = ImageFolder(root, T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.PILToTensor()]))
        it = iter(DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers))
        count = sum(len(x) for x, _ in it)
        del it   # shuts its workers down and joins them (the end of the epoch already did)
        return count
    torch.set_num_threads(1)   # as in DataLoader workers: no intra-op threads spinning on the CPU clock
    try:
        return _timed(run)
    finally:
        torch.set_num_threads(threads)


def run_input_pipeline(args) -> int:
    count = check_int(args.images, "--images", 64)
    workers = (os.cpu_count() or 1) if args.workers is None else check_int(args.workers, "--workers", 0)
    batch = int(args.batch) if args.batch else 64
    root = args.data or os.path.join(os.path.expanduser("~"), ".cache", "fastconv", f"input_pipeline_{count}")
    print(f"fastconv bench input_pipeline: {count} JPEGs (~500x375, q90) in {root}; decode + RandomResizedCrop(224) "
          f"+ flip + batch {batch}, uint8; {os.cpu_count()} cores visible")
    t0 = time.perf_counter()
    make_image_folder(root, count, seed=args.seed)
    print(f"data set ready in {time.perf_counter() - t0:.1f} s")
    try:
        import torchvision
    except Exception as exc:
        raise RuntimeError(f"the baseline needs torchvision (pip install fastconv[bench]): {exc}") from None
    from ..data.images import decoder_name
    print(f"decoders: fastconv {decoder_name()}; torchvision {torchvision.__version__} ImageFolder (PIL)")
    print(f"same crop, same pixels: max difference {_check_same_pixels(root)} (<= 1)")
    rows = []
    print(f"  {'decoding in':24s} {'fastconv img/s':>15s} {'torchvision':>12s} {'ratio':>6s}   "
          f"{'fastconv img/CPU-s':>19s} {'torchvision':>12s} {'ratio':>6s}")
    for w in sorted({0, workers}):
        ours, ours_cpu = _time_fastconv(root, w, batch, args.seed)
        theirs, theirs_cpu = _time_torchvision(root, w, batch, args.seed)
        rows.append({"workers": w, "fastconv_images_per_s": ours, "torchvision_images_per_s": theirs,
                     "ratio": ours / theirs, "fastconv_images_per_cpu_s": ours_cpu,
                     "torchvision_images_per_cpu_s": theirs_cpu, "ratio_per_cpu_s": ours_cpu / theirs_cpu})
        label = "the main process" if w == 0 else f"{w} worker processes"
        print(f"  {label:24s} {ours:15.0f} {theirs:12.0f} {ours / theirs:5.2f}x   "
              f"{ours_cpu:19.0f} {theirs_cpu:12.0f} {ours_cpu / theirs_cpu:5.2f}x", flush=True)
    need = H200_RESNET50_IMAGES_PER_SECOND
    for name in ("fastconv", "torchvision"):
        rate = min(r[f"{name}_images_per_cpu_s"] for r in rows)
        print(f"  one H200 training ResNet-50 needs ~{need[0]}-{need[1]} img/s: {name} at {rate:.0f} img per CPU-second "
              f"-> {need[0] / rate:.0f}-{need[1] / rate:.0f} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"op": "input_pipeline", "images": count, "batch": batch, "cpu_count": os.cpu_count(),
                       "decoder": decoder_name(), "torchvision": torchvision.__version__, "rows": rows,
                       "h200_resnet50_images_per_s": list(need)}, f, indent=2)
    return 0
