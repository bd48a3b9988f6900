// problem.h — the problem-size structs every conv and pool kernel takes by value.
//
// Vocabulary (CUTLASS's): activation x (N, H, W, C) NHWC, filter w (R, S, C/groups, K) (Keras
// layout), output y (N, P, Q, K). Padding is resolved on the host (fastconv/shapes.py) to explicit
// top/left offsets; bottom/right are implied by P and Q. Plain ints only (no pointers), so the
// structs are trivially copyable: the emulator receives them as bytes, the launchers fill them
// from Python, and the layout below is mirrored by fastconv/backends/plans/common.py
// (CONV2D_PROBLEM_FIELDS, POOL2D_PROBLEM_FIELDS).
#pragma once
#include "platform.h"

namespace fc {

struct Conv2dProblem {
  int N, H, W, C;          // activation
  int K, R, S;             // filter: K output channels, R x S window
  int P, Q;                // output height and width
  int pad_h, pad_w;        // top and left padding
  int stride_h, stride_w;
  int dilation_h, dilation_w;
  int groups;

  FC_HOST_DEVICE int Cg() const { return C / groups; }   // input channels per group
  FC_HOST_DEVICE int Kg() const { return K / groups; }   // output channels per group
};
static_assert(sizeof(Conv2dProblem) == 16 * sizeof(int), "Conv2dProblem is mirrored in Python: 16 ints");

// Pooling windows follow the conv geometry with dilation 1 and groups == channels.
struct Pool2dProblem {
  int N, H, W, C;
  int P, Q;
  int R, S;                // window
  int pad_h, pad_w;
  int stride_h, stride_w;
};
static_assert(sizeof(Pool2dProblem) == 12 * sizeof(int), "Pool2dProblem is mirrored in Python: 12 ints");

}  // namespace fc
