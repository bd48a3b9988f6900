"""Small generated image data sets (folders and tar shards) for the fastconv.data.images tests; no network."""
import io
import os
import tarfile

import numpy as np
from PIL import Image


def smooth_image(rng, height, width):
    """A photo-like RGB image: smooth gradients plus a little noise, so JPEG and resizing behave as on photos."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.02, 0.08, 3)
    planes = [127 + 100 * np.sin(freq[c] * xx + 0.7 * freq[c] * yy + phase[c]) for c in range(3)]
    pixels = np.stack(planes, -1) + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode(pixels, fmt="JPEG", **kw):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}) | kw)
    return buf.getvalue()


def make_folder(root, classes=("cat", "dog", "eel"), per_class=4, size=(48, 64), seed=0, fmt="JPEG"):
    """root/<class>/<i>.jpg with random sizes around `size` (h, w); returns the root as a str."""
    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(per_class):
            h, w = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
            ext = "jpg" if fmt == "JPEG" else fmt.lower()
            with open(os.path.join(root, c, f"{i:03d}.{ext}"), "wb") as f:
                f.write(encode(smooth_image(rng, h, w), fmt))
    return str(root)


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_shards(directory, labels, shards=2, size=(40, 52), seed=0):
    """shard-000.tar ... holding <key>.jpg + <key>.cls for each label, in order; returns the brace pattern."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    per = -(-len(labels) // shards)
    for s in range(shards):
        with tarfile.open(os.path.join(directory, f"shard-{s:03d}.tar"), "w") as tar:
            for i in range(s * per, min(len(labels), (s + 1) * per)):
                add_member(tar, f"sample{i:05d}.jpg", encode(smooth_image(rng, *size)))
                add_member(tar, f"sample{i:05d}.cls", str(int(labels[i])).encode())
    return os.path.join(str(directory), f"shard-{{000..{shards - 1:03d}}}.tar")
