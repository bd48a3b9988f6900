"""fastconv._host's decode_jpeg_region (csrc/host/jpeg_region.h) against Pillow's whole decode: the same
pixels in every region, for every chroma subsampling, progressive and restart-marker JPEGs, grayscale, and
each DCT scale; bad files and bad arguments as clear errors."""
import io

import numpy as np
import pytest
from image_sets import smooth_image
from PIL import Image

from fastconv import _host

pytestmark = pytest.mark.skipif(not _host.jpeg, reason="fastconv._host was built without libjpeg-turbo headers "
                                "(setup.py prints why; FASTCONV_JPEG_PREFIX names a prefix)")


def _jpeg(pixels, **options):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


def _pillow(data, scale=1):
    image = Image.open(io.BytesIO(data))
    if scale > 1:
        image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))   # Pillow picks 1/scale for this
    return np.asarray(image.convert("RGB"))


def _regions(rng, width, height, n):
    yield (0, 0, width, height)
    yield (width - 1, height - 1, width, height)
    for _ in range(n):
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        yield left, top, int(rng.integers(left + 1, width + 1)), int(rng.integers(top + 1, height + 1))


@pytest.mark.parametrize("kind", ["4:2:0", "4:2:2", "4:4:4", "gray", "progressive", "restarts"])
def test_every_region_is_the_whole_decodes(kind):
    rng = np.random.default_rng(0)
    # noise on a smooth image: chroma that changes from pixel to pixel shows any upsampling seam
    pixels = np.clip(smooth_image(rng, 203, 317).astype(int) + rng.integers(-40, 41, (203, 317, 3)), 0, 255).astype(np.uint8)
    options = {"4:2:0": {"subsampling": 2}, "4:2:2": {"subsampling": 1}, "4:4:4": {"subsampling": 0},
               "gray": {}, "progressive": {"progressive": True}, "restarts": {"restart_marker_blocks": 3}}[kind]
    data = _jpeg(pixels[..., 0] if kind == "gray" else pixels, **options)
    whole = _pillow(data)
    for box in _regions(rng, 317, 203, 40):
        left, top, right, bottom = box
        assert np.array_equal(_host.decode_jpeg_region(data, 1, box), whole[top:bottom, left:right]), box


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_regions_of_a_dct_scaled_decode(scale):
    rng = np.random.default_rng(scale)
    data = _jpeg(smooth_image(rng, 375, 500))
    whole = _pillow(data, scale)
    (width, height), supported = _host.jpeg_shape(data, scale)
    assert supported and whole.shape[:2] == (height, width)
    for box in _regions(rng, width, height, 20):
        left, top, right, bottom = box
        assert np.array_equal(_host.decode_jpeg_region(data, scale, box), whole[top:bottom, left:right]), box


def test_bad_files_and_arguments_are_errors():
    data = _jpeg(smooth_image(np.random.default_rng(1), 64, 80))
    with pytest.raises(ValueError, match="not decoded"):
        _host.decode_jpeg_region(data[: len(data) // 2], 1, (0, 0, 80, 64))   # truncated: not half an image
    corrupt = bytearray(data)
    corrupt[len(data) // 2: len(data) // 2 + 64] = b"\xff\x01" * 32   # markers inside the entropy-coded data
    with pytest.raises(ValueError, match="not decoded"):
        _host.decode_jpeg_region(bytes(corrupt), 1, (0, 0, 80, 64))
    with pytest.raises(ValueError, match="not decoded"):
        _host.decode_jpeg_region(b"GIF89a" + bytes(100), 1, (0, 0, 1, 1))
    with pytest.raises(ValueError, match="outside the decode"):
        _host.decode_jpeg_region(data, 1, (0, 0, 81, 64))
    with pytest.raises(ValueError, match="outside the decode"):
        _host.decode_jpeg_region(data, 2, (0, 0, 41, 32))
    with pytest.raises(ValueError, match="scale_denom must be 1, 2, 4 or 8"):
        _host.decode_jpeg_region(data, 3, (0, 0, 8, 8))
    with pytest.raises(ValueError, match="0 <= left < right"):
        _host.decode_jpeg_region(data, 1, (5, 0, 5, 8))
    with pytest.raises(ValueError, match="not a readable JPEG"):
        _host.jpeg_shape(b"\xff\xd8" + bytes(10))


def test_cmyk_is_left_to_pillow():
    buf = io.BytesIO()
    Image.fromarray(smooth_image(np.random.default_rng(2), 16, 16)).convert("CMYK").save(buf, "JPEG")
    (width, height), supported = _host.jpeg_shape(buf.getvalue())
    assert (width, height) == (16, 16) and not supported
