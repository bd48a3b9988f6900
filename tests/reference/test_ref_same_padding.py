"""'same' padding resolution follows TensorFlow's rule for every stride and dilation."""
import pytest

from fastconv.shapes import conv_output_hw, resolve_padding

# (in, kernel, stride, dilation) -> (top, bottom), written out by hand from
# pad_total = max((ceil(in/s) - 1) * s + (k - 1) * d + 1 - in, 0), the extra pixel at the bottom/right.
TABLE = [
    ((28, 3, 1, 1), (1, 1)),
    ((28, 3, 2, 1), (0, 1)),     # out 14: 13*2 + 3 - 28 = 1
    ((27, 3, 2, 1), (1, 1)),     # out 14: 26 + 3 - 27 = 2
    ((13, 6, 5, 1), (1, 2)),     # TF docs' example: out 3, total 3
    ((10, 1, 3, 1), (0, 0)),     # 1x1 never pads
    ((5, 7, 2, 1), (3, 3)),      # kernel larger than input: out 3, total 6
    ((224, 7, 2, 1), (2, 3)),    # ResNet stem: out 112, total 5
    ((9, 3, 1, 2), (2, 2)),      # dilated extent 5
    ((10, 3, 3, 2), (2, 2)),     # out 4: 9 + 5 - 10 = 4
    ((4, 2, 4, 1), (0, 0)),      # stride equals input: out 1, total 0
]


@pytest.mark.parametrize("case,expected", TABLE)
def test_same_padding_table(case, expected):
    size, k, s, d = case
    (top, bottom), (left, right) = resolve_padding("same", (size, size + 1), (k, k), (s, s), (d, d))
    assert (top, bottom) == expected
    p, _ = conv_output_hw((size, size + 1), (k, k), (s, s), ((top, bottom), (left, right)), (d, d))
    assert p == -(-size // s)                                  # ceil(in / stride)


def test_same_padding_rule_on_a_grid():
    for size in range(1, 20):
        for k in range(1, 6):
            for s in range(1, 5):
                for d in range(1, 3):
                    ((top, bottom), _) = resolve_padding("same", (size, size), (k, k), (s, s), (d, d))
                    out = -(-size // s)
                    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
                    assert (top, bottom) == (total // 2, total - total // 2)
                    assert conv_output_hw((size, size), (k, k), (s, s), ((top, bottom),) * 2, (d, d))[0] == out
