"""fastconv bench --op input_pipeline: the generated data set, and one small run against torchvision."""
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from fastconv.bench.input_pipeline import make_image_folder, run_input_pipeline


def test_generated_folder_has_imagenet_like_jpegs_and_is_reused(tmp_path):
    root = make_image_folder(str(tmp_path / "d"), 12, classes=3)
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg"))
    assert len(paths) == 12 and len(os.listdir(root)) == 4   # 3 class folders and the completion marker
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            short, long = sorted(im.size)   # 500x375 or 375x500, each side jittered by up to 40 / 30 pixels
            assert 335 <= short <= 415 and 460 <= long <= 540
    stamp = os.path.getmtime(paths[0])
    make_image_folder(root, 12, classes=3)
    assert os.path.getmtime(paths[0]) == stamp


@pytest.mark.slow
def test_run_against_torchvision_writes_both_rates(tmp_path, capsys):
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        pytest.skip(f"torchvision is not importable here: {type(exc).__name__}")
    args = types.SimpleNamespace(images=64, workers=1, batch="16", data=str(tmp_path / "d"), seed=0,
                                 json=str(tmp_path / "r.json"))
    assert run_input_pipeline(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert [r["workers"] for r in result["rows"]] == [0, 1]
    for r in result["rows"]:
        assert r["fastconv_images_per_s"] > 0 and r["torchvision_images_per_cpu_s"] > 0
        assert np.isclose(r["ratio"], r["fastconv_images_per_s"] / r["torchvision_images_per_s"])
    assert "same crop, same pixels: max difference" in capsys.readouterr().out
