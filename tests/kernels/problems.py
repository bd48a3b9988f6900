"""The curated problem list every kernel test draws from (small: the emulator runs a fiber per thread).

Conv problems cover: 1x1, 7x7 stride 2 'same', asymmetric padding, padding larger than the stride
and the kernel, strides 2 and 3 (with rows no window reads), dilation, groups, depthwise (channel
multiplier 1 and 2), C not a multiple of the 4-wide vector, sizes one off a tile (M = 33 rows,
K = 33 and 40 channels), and vector-width-4 shapes with and without groups.
"""
from fastconv.shapes import resolve_padding

# name: (x shape NHWC, w shape (R, S, C/groups, K), stride, padding spec, dilation, groups)
CONV = {
    "1x1_vec4": ((2, 5, 5, 8), (1, 1, 8, 12), (1, 1), "valid", (1, 1), 1),
    "7x7s2_same_c3": ((1, 11, 9, 3), (7, 7, 3, 5), (2, 2), "same", (1, 1), 1),
    "asym_pad_s3x2": ((2, 9, 8, 4), (3, 2, 4, 8), (3, 2), ((2, 1), (0, 3)), (1, 1), 1),
    "pad_gt_kernel": ((1, 5, 6, 4), (2, 2, 4, 4), (1, 1), ((3, 2), (4, 3)), (1, 1), 1),
    "s3_leftover_c5": ((2, 7, 7, 5), (3, 3, 5, 3), (3, 3), "valid", (1, 1), 1),
    "groups2_dil2_vec4": ((2, 8, 9, 8), (3, 3, 4, 8), (1, 2), ((1, 1), (1, 1)), (2, 1), 2),
    "groups3_s2_vec4": ((1, 7, 6, 12), (3, 3, 4, 12), (2, 2), "same", (1, 1), 3),
    "groups3_c6": ((1, 6, 5, 6), (2, 2, 2, 9), (1, 1), ((1, 0), (0, 1)), (1, 1), 3),
    "depthwise_x2": ((2, 9, 9, 4), (3, 3, 1, 8), (2, 2), "same", (1, 1), 4),
    "depthwise_x1": ((1, 6, 7, 3), (3, 3, 1, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3),
    "dil3x2": ((1, 13, 12, 2), (2, 3, 2, 4), (1, 2), ((0, 2), (1, 0)), (3, 2), 1),
    "m33_k33": ((1, 3, 11, 4), (1, 1, 4, 33), (1, 1), "valid", (1, 1), 1),
    "k40_s2": ((2, 10, 10, 8), (3, 3, 8, 40), (2, 2), ((1, 0), (1, 0)), (1, 1), 1),
}


def conv_args(name):
    x_shape, w_shape, stride, pad, dil, groups = CONV[name]
    pads = resolve_padding(pad, x_shape[1:3], w_shape[:2], stride, dil)
    return x_shape, w_shape, stride, pads, dil, groups


# name: (x shape, pool, stride, padding ((t, b), (l, r)))
POOL = {
    "2x2s2": ((2, 7, 9, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),
    "3x3s2_pad1": ((1, 8, 8, 5), (3, 3), (2, 2), ((1, 1), (1, 1))),
    "3x2_asym": ((2, 5, 6, 4), (3, 2), (1, 2), ((2, 0), (0, 1))),
    "window_in_padding": ((1, 4, 4, 2), (2, 2), (1, 1), ((2, 1), (0, 2))),
    "area_272_uint16": ((1, 17, 18, 2), (16, 17), (1, 1), ((0, 0), (0, 0))),
}

# name: (M, N, K)
GEMM = {"33x17x9": (33, 17, 9), "64x64x64": (64, 64, 64), "5x40x3": (5, 40, 3), "1x1x1": (1, 1, 1),
        "100x36x20": (100, 36, 20)}
