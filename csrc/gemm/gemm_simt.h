// gemm_simt.h — dense GEMM with the fused bias + activation epilogue, for the Dense layer:
//     C[m, n] = act( sum_k op(A)[m, k] * op(B)[k, n] + bias[n] )
//     op(A)[m, k] = kTransA ? A[k * lda + m] : A[m * lda + k]   (row-major storage, leading dims given)
//     op(B)[k, n] = kTransB ? B[n * ldb + k] : B[k * ldb + n]
// All four transpose combinations: dense fprop is NN (x @ w), dgrad NT (dy @ w.T), wgrad TN (x.T @ dy).
// gemm_bias_act on the shared CUDA-core main loop (gemm_mainloop_simt.h); kVec = 4 when
// M, N, K and the leading dimensions are multiples of 4 and the pointers 16-byte aligned.
// Checked by: python -m pytest tests/kernels -q -k gemm
#pragma once
#include "../epilogue/bias_act.h"
#include "gemm_mainloop_simt.h"

namespace fc {

template <class T, class Index>
struct MatrixStore {
  T* c;
  Index ldc;
  BiasActEpilogue<T> stage;
  FC_DEVICE void operator()(Index m, Index n, T acc) const { c[m * ldc + n] = stage(acc, n); }
};

// grid (ceil(M / BM), ceil(N / BN)) or those tiles on grid.x (fc::block_tile), block Tile::kThreads.
// bias is read only when has_bias.
template <class Tile, int kVec, class Index, class T, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(Tile::kThreads, 1)
gemm_bias_act(Index M, Index N, Index K, const T* __restrict__ A, Index lda, const T* __restrict__ B, Index ldb,
              T* __restrict__ C, Index ldc, const T* __restrict__ bias, int has_bias, int act, T alpha) {
  MatrixGather<T, Index, !kTransA> ga{A, lda, M};
  MatrixGather<T, Index, kTransB> gb{B, ldb, N};
  MatrixStore<T, Index> out{C, ldc, BiasActEpilogue<T>{bias, has_bias, act, alpha}};
  const BlockTile tile = block_tile(ceil_div<int64_t>(M, Tile::BM), ceil_div<int64_t>(N, Tile::BN));
  gemm_mainloop<Tile, kVec, T, Index, !kTransA, kTransB>(ga, gb, M, N, Index(0), K, Index(tile.x) * Tile::BM,
                                                         Index(tile.y) * Tile::BN, out);
}

}  // namespace fc
