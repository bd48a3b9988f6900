// conv2d_fprop_simt.h — forward convolution (cross-correlation) on NHWC activations, Keras filters:
//     y[n, p, q, g*Kg + j] = epilogue( sum_{r, s, c < Cg} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, g*Cg + c]
//                                                    * w[r, s, c, g*Kg + j] )
// as an implicit GEMM per group g: M = N*P*Q rows (n, p, q), N = Kg columns, K = R*S*Cg (r, s, c);
// padding taps read as zero. Every stride, padding (asymmetric, larger than the stride), dilation
// and group count of the reference.
// conv2d_fprop_implicit_gemm: the shared CUDA-core main loop (gemm/gemm_mainloop_simt.h),
// kVec = 4 (16-byte loads along c and k) when C, Cg, K, Kg are multiples of 4 and the
// pointers 16-byte aligned, else kVec = 1; the bias + activation epilogue fused.
// (depthwise, Cg == 1, has its own direct kernel: conv2d_depthwise_simt.h)
// Checked by: python -m pytest tests/kernels -q -k fprop   (emulator vs NumPy; nvcc + NVRTC builds)
#pragma once
#include "../common/problem.h"
#include "../epilogue/bias_act.h"
#include "../gemm/gemm_mainloop_simt.h"

namespace fc {

// A[m, kk] = x[n, h, w, g*Cg + c]: m = (n, p, q), kk = (r, s, c); contiguous along kk (c).
template <class T, class Index>
struct Conv2dFpropActivationGather {
  const T* x;
  Conv2dProblem pb;
  Index M;
  int group;

  struct Row {
    Index base;   // offset of x[n, 0, 0, g*Cg]
    int h0, w0;   // input position of tap (0, 0)
    bool valid;
  };

  FC_DEVICE Row row(Index m) const {
    Row r;
    r.valid = m < M;
    if (!r.valid) m = 0;
    const int q = int(m % pb.Q);
    const Index t = m / pb.Q;
    const int p = int(t % pb.P);
    const Index n = t / pb.P;
    r.h0 = p * pb.stride_h - pb.pad_h;
    r.w0 = q * pb.stride_w - pb.pad_w;
    r.base = ((n * Index(pb.H)) * Index(pb.W)) * Index(pb.C) + Index(group) * pb.Cg();
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const {
    const int cg = pb.Cg();
    const int c = int(kk % cg);
    const int rs = int(kk / cg);
    const int h = r.h0 + (rs / pb.S) * pb.dilation_h;
    const int w = r.w0 + (rs % pb.S) * pb.dilation_w;
    if (r.valid && h >= 0 && h < pb.H && w >= 0 && w < pb.W) {
      load_vec<V>(x + r.base + (Index(h) * pb.W + w) * Index(pb.C) + c, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

template <class T, class Index>
struct Conv2dOutputStore {   // y[m, g*Kg + j] = epilogue(acc), also used by dgrad with (C, Cg)
  T* y;
  int ld, group_cols, group;
  BiasActEpilogue<T> stage;

  FC_DEVICE void operator()(Index m, Index j, T acc) const {
    const int col = group * group_cols + int(j);
    y[m * Index(ld) + col] = stage(acc, col);
  }
};

// grid (ceil(N*P*Q / BM), ceil(Kg / BN), groups) or those tiles on grid.x (fc::block_tile), block Tile::kThreads.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_fprop_implicit_gemm(Conv2dProblem pb, const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                           const T* __restrict__ bias, int has_bias, int act, T alpha) {
  const Index M = Index(pb.N) * pb.P * pb.Q;
  const int Kg = pb.Kg();
  const BlockTile tile = block_tile(ceil_div<int64_t>(M, Tile::BM), ceil_div<int64_t>(Kg, Tile::BN));
  const int group = int(tile.z);
  Conv2dFpropActivationGather<T, Index> ga{x, pb, M, group};
  // B[kk, j] = w[r, s, c, g*Kg + j] = w[kk * K + g*Kg + j]: group g's columns of a (R*S*Cg) x K matrix
  MatrixGather<T, Index, false> gb{w + Index(group) * Kg, Index(pb.K), Index(Kg)};
  Conv2dOutputStore<T, Index> out{y, pb.K, Kg, group, BiasActEpilogue<T>{bias, has_bias, act, alpha}};
  const Index k_total = Index(pb.R) * pb.S * pb.Cg();
  gemm_mainloop<Tile, kVec, T, Index, true, false>(ga, gb, M, Index(Kg), Index(0), k_total,
                                                   Index(tile.x) * Tile::BM, Index(tile.y) * Tile::BN, out);
}

}  // namespace fc
