"""fastconv.data.images transforms against torchvision's (same inputs, same crop parameters), the
reduced-scale JPEG decode against the full decode, and the decoder's outcome for every image mode;
each with Pillow decoding JPEGs, with simplejpeg (when installed) and with both and fastconv._host's
region decode of crops (auto)."""
import io

import numpy as np
import pytest
from image_sets import encode, smooth_image
from PIL import Image

from fastconv.data.images import CenterCrop, DecodeError, RandomResizedCrop, decode
from fastconv.data.images.decode import EncodedImage


@pytest.fixture(autouse=True, params=["pillow", "simplejpeg", "auto"])
def jpeg_decoder(request, monkeypatch):
    if request.param != "pillow":
        pytest.importorskip("simplejpeg")
    monkeypatch.setenv("FASTCONV_JPEG_DECODER", request.param)
    return request.param


def _tv():
    try:   # a torchvision whose compiled ops do not match the installed torch fails with other errors
        import torchvision.transforms as T
        import torchvision.transforms.functional as TF
    except Exception as exc:
        pytest.skip(f"torchvision is not importable here: {type(exc).__name__}")
    return T, TF


def _pil(data):
    return Image.open(io.BytesIO(data)).convert("RGB")


def _max_diff(a, b):
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (60, 61)])
def test_random_resized_crop_matches_torchvision_resized_crop_with_the_same_parameters(fmt, shape):
    _, TF = _tv()
    data = encode(smooth_image(np.random.default_rng(1), *shape), fmt)
    t = RandomResizedCrop(56, flip=0.0, reduced_decode=False)
    for seed in range(5):
        params = t.get_params(shape[1], shape[0], np.random.default_rng(seed))
        ours = t(data, np.random.default_rng(seed))
        theirs = TF.resized_crop(_pil(data), *params, [56, 56])   # PIL bilinear, antialiased, as ours
        assert ours.shape == (56, 56, 3) and ours.dtype == np.uint8
        assert _max_diff(ours, theirs) <= 1, (params, _max_diff(ours, theirs))


def test_flip_is_torchvision_hflip_of_the_crop():
    _, TF = _tv()
    data = encode(smooth_image(np.random.default_rng(2), 90, 120), "PNG")
    flipped = RandomResizedCrop(32, flip=1.0, reduced_decode=False)
    params = flipped.get_params(120, 90, np.random.default_rng(3))
    theirs = TF.hflip(TF.resized_crop(_pil(data), *params, [32, 32]))
    assert _max_diff(flipped(data, np.random.default_rng(3)), theirs) <= 1
    kept = RandomResizedCrop(32, flip=0.0, reduced_decode=False)(data, np.random.default_rng(3))
    assert np.array_equal(kept[:, ::-1], flipped(data, np.random.default_rng(3)))


@pytest.mark.parametrize("shape", [(10, 1000), (1000, 10), (50, 50)])
def test_get_params_fallback_equals_torchvision(shape):
    # scale (1, 1) with a ratio far from the image's: all ten tries fail, both take the clamped centre crop
    T, _ = _tv()
    h, w = shape
    ratio = (3 / 4, 4 / 3) if h != w else (2.0, 3.0)
    ours = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=ratio).get_params(w, h, np.random.default_rng(0))
    theirs = T.RandomResizedCrop.get_params(Image.new("RGB", (w, h)), scale=[1.0, 1.0], ratio=list(ratio))
    assert ours == tuple(theirs)


def test_get_params_draws_areas_and_ratios_in_range():
    t = RandomResizedCrop(8, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = t.get_params(300, 200, rng)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
        # w and h are rounded to ints: allow their rounding in the area and the ratio
        assert 0.2 * 60000 - (w + h) <= w * h <= 0.6 * 60000 + (w + h)
        assert 0.5 - 1 / h <= w / h <= 2.0 + 1 / h


@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (230, 229)])
@pytest.mark.parametrize("reduced", [False, True])
def test_center_crop_matches_torchvision_resize_then_center_crop(shape, reduced):
    T, _ = _tv()
    data = encode(smooth_image(np.random.default_rng(4), *shape), "PNG")   # PNG: no DCT scaling, exact
    ours = CenterCrop(224, resize=256, reduced_decode=reduced)(data)
    theirs = T.Compose([T.Resize(256), T.CenterCrop(224)])(_pil(data))
    assert ours.shape == (224, 224, 3)
    assert _max_diff(ours, theirs) <= 1


def _jpeg_error(full, original, box, size):
    """How far the full JPEG decode already is from the unencoded image, after the same crop+resize."""
    ref = np.asarray(Image.fromarray(original).crop(box).resize(size, Image.Resampling.BILINEAR), np.float64)
    return np.abs(np.asarray(full, np.float64) - ref).mean()


def test_reduced_decode_adds_less_error_than_jpeg_itself():
    original = smooth_image(np.random.default_rng(5), 375, 500)
    data = encode(original, "JPEG")
    full, reduced = (RandomResizedCrop(64, flip=0.0, reduced_decode=r) for r in (False, True))
    for seed in range(6):
        top, left, h, w = full.get_params(500, 375, np.random.default_rng(seed))
        a, b = full(data, np.random.default_rng(seed)), reduced(data, np.random.default_rng(seed))
        # the DCT-scaled decode may differ from decode-then-resize, but by less than JPEG's own error
        bound = _jpeg_error(a, original, (left, top, left + w, top + h), (64, 64))
        assert np.abs(a.astype(np.float64) - b).mean() <= max(bound, 1.0)


def test_reduced_decode_decodes_fewer_pixels(monkeypatch):
    data = encode(smooth_image(np.random.default_rng(6), 400, 480), "JPEG")
    sizes, pixels_original, crop_original = [], EncodedImage.pixels, EncodedImage.crop_pixels

    def spy(self, request=None):
        out = pixels_original(self, request)
        sizes.append((out.shape[1], out.shape[0]))
        return out

    def crop_spy(self, box, request=None):   # the crop's pixels in the decoded image: whole, and no more
        pixels, inner = crop_original(self, box, request)
        sizes.append((pixels.shape[1], pixels.shape[0]))
        assert 0 <= inner[0] < 1 and 0 <= inner[1] < 1 and pixels.shape[1] - 1 < inner[2] <= pixels.shape[1]
        return pixels, inner
    monkeypatch.setattr(EncodedImage, "pixels", spy)
    monkeypatch.setattr(EncodedImage, "crop_pixels", crop_spy)
    CenterCrop(48, resize=56)(data)
    RandomResizedCrop(32, scale=(0.9, 1.0))(data, np.random.default_rng(0))
    CenterCrop(48, resize=56, reduced_decode=False)(data)
    assert sizes[0] == (480 // 4, 400 // 4)     # shorter side 400/8 = 50 < 56, so 1/4 is the smallest cover
    assert sizes[-2][0] <= 480 // 4 and sizes[-2][0] >= 32   # a crop of >= 90% of the area, at 1/4
    assert sizes[-1] == (480, 400)


@pytest.mark.parametrize("mode, fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"),
                                       ("I;16", "PNG"), ("P", "PNG")])
def test_crop_pixels_is_the_crop_of_the_full_decode(mode, fmt):
    # the RandomResizedCrop path (a view of the crop's whole pixels) against decode(), for every decoder and mode
    pixels = smooth_image(np.random.default_rng(10), 75, 101)
    image = Image.fromarray(pixels)
    image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257) if mode == "I;16" else image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    full = np.asarray(EncodedImage(buf.getvalue(), "x").decode())
    for box in [(0, 0, 101, 75), (3, 5, 40, 70), (60, 0, 101, 1), (100, 74, 101, 75)]:
        crop, inner = EncodedImage(buf.getvalue(), "x").crop_pixels(box)
        assert inner == (0, 0, box[2] - box[0], box[3] - box[1])
        assert np.array_equal(crop, full[box[1]:box[3], box[0]:box[2]])


def test_decoded_images_survive_the_next_decode():
    # decode() hands Pillow a decoded array: what it returned must not change with the next decode
    first, second = (encode(smooth_image(np.random.default_rng(s), 40, 50), "JPEG") for s in (11, 12))
    image = EncodedImage(first, "a").decode()
    kept = np.asarray(image).copy()
    EncodedImage(second, "b").decode()
    EncodedImage(second, "b").crop_pixels((0, 0, 50, 40))
    assert np.array_equal(np.asarray(image), kept) and not np.array_equal(kept, np.asarray(EncodedImage(second, "b").decode()))


def _decoded(pixels_or_image, fmt, **kw):
    buf = io.BytesIO()
    image = pixels_or_image if isinstance(pixels_or_image, Image.Image) else Image.fromarray(pixels_or_image)
    image.save(buf, fmt, **kw)
    return np.asarray(EncodedImage(buf.getvalue(), "x").decode())


def test_every_mode_has_a_defined_outcome():
    rng = np.random.default_rng(7)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    assert np.array_equal(_decoded(gray, "PNG"), np.repeat(gray[..., None], 3, -1))
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    assert np.array_equal(_decoded(rgba, "PNG"), rgba[..., :3])            # alpha dropped, as torchvision
    wide = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    assert np.array_equal(_decoded(Image.fromarray(wide), "PNG"), np.repeat((wide >> 8)[..., None], 3, -1).astype(np.uint8))
    palette = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).convert("P")
    assert np.array_equal(_decoded(palette, "PNG"), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).convert("CMYK")
    assert np.array_equal(_decoded(cmyk, "TIFF"), np.asarray(cmyk.convert("RGB")))
    cmyk_jpeg = _decoded(cmyk, "JPEG", quality=95)
    assert cmyk_jpeg.shape == (6, 5, 3) and cmyk_jpeg.dtype == np.uint8
    with pytest.raises(DecodeError, match="x: unsupported image mode 'F'"):
        _decoded(Image.fromarray(rng.random((6, 5), dtype=np.float32)), "TIFF")


@pytest.mark.parametrize("data, message", [
    (b"plain text, not an image", "not an image file"),
    (b"", "not an image file"),
])
def test_non_images_are_decode_errors_naming_the_file(data, message):
    with pytest.raises(DecodeError, match=f"a/b.jpg: {message}"):
        CenterCrop(8, resize=8)(data, None, "a/b.jpg")


def test_truncated_jpeg_is_a_decode_error_naming_the_file():
    data = encode(smooth_image(np.random.default_rng(8), 64, 64), "JPEG")
    with pytest.raises(DecodeError, match="t.jpg: corrupt or truncated"):
        CenterCrop(8, resize=8, reduced_decode=False)(data[: len(data) // 2], None, "t.jpg")


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size must be a positive int"), ({"size": (3,)}, "size must be"),
    ({"size": 8, "scale": (0.5, 0.1)}, "scale must be a"), ({"size": 8, "ratio": (0, 1)}, "ratio must be"),
    ({"size": 8, "flip": 2}, "flip must be a probability"),
])
def test_random_resized_crop_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomResizedCrop(**kwargs)


def test_center_crop_refuses_a_resize_below_the_crop():
    with pytest.raises(ValueError, match="resize must be >= the crop size 224"):
        CenterCrop(224, resize=200)
    assert CenterCrop(224).resize == 256


def test_decoder_name_names_the_jpeg_decoder(jpeg_decoder):
    name = decode.decoder_name()
    from fastconv import _host
    first = {"pillow": "Pillow ", "simplejpeg": "simplejpeg ", "auto": "fastconv._host " if _host.jpeg else "simplejpeg "}
    assert "Pillow " in name and name.startswith(first[jpeg_decoder])


@pytest.mark.parametrize("request_size", [None, (100, 80), (40, 30), (10, 10)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_simplejpeg_and_pillow_decode_the_same_pixels(monkeypatch, request_size, mode):
    pytest.importorskip("simplejpeg")
    pixels = smooth_image(np.random.default_rng(9), 250, 333)
    data = encode(pixels if mode == "RGB" else pixels[..., 0], "JPEG")
    out = {}
    for decoder in ("pillow", "auto"):
        monkeypatch.setenv("FASTCONV_JPEG_DECODER", decoder)
        image = EncodedImage(data, "x")
        assert (image._fast is None) == (decoder == "pillow")
        out[decoder] = np.asarray(image.decode(request_size))
        assert (image._fast is None) == (decoder == "pillow")   # simplejpeg did decode: no fallback to Pillow
    assert out["pillow"].shape == out["auto"].shape
    assert _max_diff(out["pillow"], out["auto"]) <= 1
