"""fastconv._host's antialiased bilinear resize (csrc/host/resize_bilinear_aa.h) against Pillow's, pixel for
pixel: random images, boxes (fractional too), output sizes (up and down), channels, flips and strided rows."""
import numpy as np
import pytest
from PIL import Image

from fastconv import _host
from fastconv.data.images import resize as resize_module
from fastconv.data.images.resize import pillow_vertical_first, resize

BILINEAR = Image.Resampling.BILINEAR
MODES = {1: "L", 3: "RGB", 4: "RGBX"}   # Pillow resizes these channel by channel (RGBA is premultiplied)


def _pillow(pixels, size, box, flip=False):
    height, width, channels = pixels.shape
    mode = MODES[channels]
    image = Image.frombuffer(mode, (width, height), np.ascontiguousarray(pixels).tobytes(), "raw", mode, 0, 1)
    image = image.resize(size, BILINEAR, box=box)
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image
    return np.asarray(image).reshape(size[1], size[0], channels)


def _kernel(pixels, size, box, vertical_first, flip=False):
    out = np.empty((size[1], size[0], pixels.shape[2]), np.uint8)
    _host.resize_bilinear_aa(pixels, box, out, vertical_first, flip)
    return out


def _cases(seed, n):
    rng = np.random.default_rng(seed)
    for i in range(n):
        height, width = (int(v) for v in rng.integers(1, 90, 2))
        channels = (1, 3, 4)[i % 3]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        if i % 4 == 0:
            box = (0, 0, width, height)
        else:   # a fractional box inside the image, as a reduced-scale decode maps a crop
            left, top = rng.uniform(0, width - 0.5), rng.uniform(0, height - 0.5)
            box = (left, top, rng.uniform(left + 0.25, width), rng.uniform(top + 0.25, height))
        size = tuple(int(v) for v in rng.integers(1, 120, 2))
        yield pixels, size, box, bool(i % 2)


@pytest.fixture(params=["avx2", "portable"])
def simd(request):
    """Both row-sum paths of the kernel: AVX2 (where the CPU has it) and the portable one."""
    if request.param == "avx2" and _host.simd() != "avx2":
        pytest.skip("this CPU has no AVX2: the portable path is the one in use")
    before = _host.simd()
    _host.simd(request.param == "avx2")
    yield request.param
    _host.simd(before == "avx2")


def test_the_kernel_gives_pillows_pixels(simd):
    for pixels, size, box, flip in _cases(0, 400):
        order = pillow_vertical_first(pixels.shape[1], pixels.shape[0], *size)
        assert np.array_equal(_kernel(pixels, size, box, order, flip), _pillow(pixels, size, box, flip)), (pixels.shape, size, box)


def test_each_pass_order_is_pillows_one_axis_at_a_time(simd):
    # the two orders round to 8 bits in between at different places; whichever the installed Pillow picks,
    # both must be its single-axis resizes chained in that order (Pillow < 13 always goes across first)
    differ = 0
    for pixels, (out_w, out_h), (left, top, right, bottom), _ in _cases(1, 200):
        height, width = pixels.shape[:2]
        across = _pillow(_pillow(pixels, (out_w, height), (left, 0, right, height)), (out_w, out_h), (0, top, out_w, bottom))
        down = _pillow(_pillow(pixels, (width, out_h), (0, top, width, bottom)), (out_w, out_h), (left, 0, right, out_h))
        box = (left, top, right, bottom)
        assert np.array_equal(_kernel(pixels, (out_w, out_h), box, False), across)
        assert np.array_equal(_kernel(pixels, (out_w, out_h), box, True), down)
        differ += not np.array_equal(across, down)
    assert differ > 20   # random pixels: the order shows, so the test above can fail


def test_strided_rows_and_a_224_crop_of_a_photo_sized_image(simd):
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    for top, left, h, w in [(20, 50, 290, 290), (0, 0, 375, 500), (100, 7, 60, 333), (300, 400, 75, 100)]:
        crop = photo[top:top + h, left:left + w]            # a view: rows 1500 bytes apart
        for flip in (False, True):
            ours = _kernel(crop, (224, 224), (0, 0, w, h), pillow_vertical_first(w, h, 224, 224), flip)
            assert np.array_equal(ours, _pillow(crop, (224, 224), (0, 0, w, h), flip))


@pytest.mark.parametrize("backend", ["kernel", "pillow"])
def test_resize_is_the_same_with_and_without_the_kernel(backend, monkeypatch):
    monkeypatch.setenv("FASTCONV_RESIZE", "pillow" if backend == "pillow" else "auto")
    assert (resize_module._host() is None) == (backend == "pillow")
    for pixels, size, box, flip in _cases(3, 60):
        assert np.array_equal(resize(pixels, size, box, flip), _pillow(pixels, size, box, flip))


def test_pillow_13_runs_the_vertical_pass_first_when_the_height_shrinks_most(monkeypatch):
    monkeypatch.setattr(resize_module, "_pillow_major", lambda: 13)
    assert pillow_vertical_first(100, 300, 100, 224) and not pillow_vertical_first(300, 300, 224, 224)
    assert not pillow_vertical_first(100, 200, 90, 224)   # growing in height: across first
    monkeypatch.setattr(resize_module, "_pillow_major", lambda: 12)
    assert not pillow_vertical_first(100, 300, 100, 224)


def test_bad_arguments_are_named():
    pixels, out = np.zeros((10, 12, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)
    cases = [
        ((pixels.astype(np.float32), (0, 0, 12, 10), out), "src must be an (H, W, C) uint8"),
        ((pixels[..., 0], (0, 0, 12, 10), out), "src must be an (H, W, C) uint8"),
        ((np.zeros((10, 12, 2), np.uint8), (0, 0, 12, 10), np.zeros((4, 5, 2), np.uint8)), "1, 3 or 4 channels"),
        ((pixels, (0, 0, 12, 10), np.zeros((4, 5, 4), np.uint8)), "out must have src's 3 channels"),
        ((pixels, (0, 0, 12, 10), np.zeros((4, 5, 3), np.int16)), "out must be an (h, w, C) uint8"),
        ((pixels, (0, 0, 12, 10), np.zeros((5, 4, 3), np.uint8).transpose(1, 0, 2)), "out must be C-contiguous"),
        ((pixels[:, ::2], (0, 0, 6, 10), out), "src's pixels must be packed"),
        ((pixels, (0, 0, 13, 10), out), "box must satisfy"),
        ((pixels, (5, 0, 5, 10), out), "box must satisfy"),
        ((pixels, (0, 0, 12), out), "box must be (left, top, right, bottom)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            _host.resize_bilinear_aa(*args, False)
