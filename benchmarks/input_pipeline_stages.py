"""CPU time per image of each stage of the input pipeline, fastconv's RandomResizedCrop(224) beside
torchvision's per-sample path, on the same files and the same crops (what `fastconv bench --op
input_pipeline` times as a whole). Usage: python benchmarks/input_pipeline_stages.py DIR [--images 200]

The two whole per-sample paths are timed image by image in turn (time.process_time), so that drift of a
shared machine falls on both alike; five passes, the median kept. Each stage is timed over all images on
its own, three passes, the fastest kept: stages timed apart miss each other's cache effects, so they add
up to less than the whole.
"""
import argparse
import glob
import os
import time

import numpy as np
from PIL import Image

from fastconv.data.images import RandomResizedCrop
from fastconv.data.images.decode import EncodedImage
from fastconv.data.images.resize import resize

BILINEAR = Image.Resampling.BILINEAR


def stage(name, fn, items, passes=3):
    best = min(_pass(fn, items) for _ in range(passes))
    print(f"  {name:44s} {best * 1e3:6.3f} ms")
    return best


def _pass(fn, items):
    start = time.process_time()
    for item in items:
        fn(*item)
    return (time.process_time() - start) / len(items)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(args.root, "*", "*.jpg")))[: args.images]
    data = [open(p, "rb").read() for p in paths]
    t = RandomResizedCrop(224, flip=0.5, reduced_decode=False)
    crops = []
    for i, d in enumerate(data):   # the crop each image gets, as the transform draws it
        rng = np.random.default_rng(i)
        crops.append((*t.get_params(*EncodedImage(d).size, rng), rng.random() < 0.5))
    print(f"{len(paths)} JPEGs from {args.root}; CPU ms per image")
    try:
        import torchvision.transforms.functional as TF
    except Exception as exc:   # a torchvision built for another torch fails with other errors than ImportError
        TF = None
        print(f"torchvision: not importable ({type(exc).__name__}): fastconv's stages only")

    def ours(p, i):
        return t(open(p, "rb").read(), np.random.default_rng(i))

    def theirs(p, i):
        c = crops[i]
        with open(p, "rb") as f:
            image = Image.open(f).convert("RGB")
        out = TF.resized_crop(image, *c[:4], [224, 224])
        return TF.pil_to_tensor(TF.hflip(out) if c[4] else out)
    pipelines = {"fastconv RandomResizedCrop(224)": ours}
    if TF is not None:
        pipelines["torchvision's ImageFolder sample (pil_loader, RandomResizedCrop, flip, PILToTensor)"] = theirs
    passes = {name: [] for name in pipelines}
    for _ in range(5):
        spent = dict.fromkeys(pipelines, 0.0)
        for i, p in enumerate(paths):
            for name, fn in pipelines.items():
                start = time.process_time()
                fn(p, i)
                spent[name] += time.process_time() - start
        for name in pipelines:
            passes[name].append(spent[name] / len(paths))
    whole = {name: sorted(v)[2] for name, v in passes.items()}
    for name, v in whole.items():
        print(f"  {name}: {v * 1e3:.3f} ms (median of {' '.join(f'{x * 1e3:.2f}' for x in passes[name])})")
    if TF is not None:
        print(f"  per-sample ratio (torchvision / fastconv CPU time): {whole[list(pipelines)[1]] / whole[list(pipelines)[0]]:.2f}x")
    print("fastconv's stages:")
    stage("  read the file", lambda p: open(p, "rb").read(), [(p,) for p in paths])
    stage("  header + get_params (+ its generator)",
          lambda d, i: t.get_params(*EncodedImage(d).size, np.random.default_rng([0, 0, i])), [(d, i) for i, d in enumerate(data)])
    stage("  decode, whole (simplejpeg)", lambda d: EncodedImage(d).pixels(None), [(d,) for d in data])
    stage("  decode, only the crop (fastconv._host where built)",
          lambda d, c: EncodedImage(d).crop_pixels((c[1], c[0], c[1] + c[3], c[0] + c[2])), list(zip(data, crops)))
    cropped = [EncodedImage(d).crop_pixels((left, top, left + w, top + h)) for d, (top, left, h, w, _) in zip(data, crops)]
    flips = [c[4] for c in crops]
    stage("  resize to 224 + flip (fastconv._host)", lambda c, f: resize(c[0], (224, 224), c[1], f), list(zip(cropped, flips)))
    pillow = [Image.fromarray(np.ascontiguousarray(c)) for c, _ in cropped]
    stage("  the same in Pillow (resize, flip, to an array)",
          lambda im, c, f: np.asarray((lambda r: r.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if f else r)(
              im.resize((224, 224), BILINEAR, box=c[1]))), list(zip(pillow, cropped, flips)))
    if TF is None:
        return
    print("torchvision's stages:")

    def load(p):
        with open(p, "rb") as f:
            return Image.open(f).convert("RGB")
    stage("  open + decode + convert('RGB') (Pillow)", load, [(p,) for p in paths])
    images = [load(p) for p in paths]
    stage("  resized_crop (crop + resize)", lambda im, c: TF.resized_crop(im, *c[:4], [224, 224]), list(zip(images, crops)))
    outs = [TF.resized_crop(im, *c[:4], [224, 224]) for im, c in zip(images, crops)]
    stage("  hflip (half of them) + pil_to_tensor",
          lambda o, c: TF.pil_to_tensor(TF.hflip(o) if c[4] else o), list(zip(outs, crops)))


if __name__ == "__main__":
    main()
