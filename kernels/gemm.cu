// gemm.cu: general matrix product for the fully connected layers (SGEMM and DGEMM):
//
//   C[m, n] = sum_k opA(m, k) * opB(k, n) + (has_bias ? bias[n] : 0),   m < M, n < N, k < K
//
// Layout: row-major. A is (M, K) or, with TRANS_A, stored (K, M); B is (K, N) or, with TRANS_B,
// stored (N, K); C is (M, N). The linear layer's three products (alexnet_raw/ops/linear.py):
//   forward          y  = x W^T + b   gemm<.., false, true>   x (batch, in), W (out, in)
//   backward input   gx = gy W        gemm<.., false, false>
//   backward weight  gW = gy^T x      gemm<.., true, false>
// Tiling: GemmTile<BM, BN> of kernels/gemm_tile.cuh (256 threads, 4 x 4 outputs per thread in
// version 1's tiles, 8 x 8 / 8 x 4 in version 2's 128 x 128 / 128 x 64 / 64 x 128 (float),
// 16-deep K slices staged in shared memory); grid (ceil(N / BN), ceil(M / BM), 1). Each thread
// stages one fixed row of each operand through one pointer moved by a slice per step (the
// K-contiguous operand at consecutive k, the other at k strided by 256 / rows), no bounds check
// except in a ragged last slice. Tile shape chosen in
// alexnet_raw/ops/gemm_tiles.py (launches built in alexnet_raw/ops/linear.py).
// Reference and tests: tests/kernels/test_linear.py (torch.nn.functional.linear and autograd).
#include "common.cuh"
#include "gemm_tile.cuh"

// The stager of gemm_tile.cuh for the two stored operands: an operand stored K-contiguous is
// staged along K (StageRowsAlongK), the other across K (StageRowsAcrossK); each thread keeps one
// pointer per operand, moved by a slice per step. No per-chunk table.
template <bool ACROSS, class Tile, int R, typename T>
struct GemmOperand { typedef StageRowsAlongK<Tile, R, T> type; };
template <class Tile, int R, typename T>
struct GemmOperand<true, Tile, R, T> { typedef StageRowsAcrossK<Tile, R, T> type; };

template <class Tile, typename T, bool TRANS_A, bool TRANS_B>
struct GemmStager {
  typedef StagePair<Tile, T, typename GemmOperand<TRANS_A, Tile, Tile::BM, T>::type,
                    typename GemmOperand<!TRANS_B, Tile, Tile::BN, T>::type> type;
};

template <typename T, int BM, int BN, bool TRANS_A, bool TRANS_B>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
gemm(T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias, int has_bias, alx_index M,
     alx_index N, alx_index K) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Tile::BK][Tile::BN + Tile::PAD];
  const alx_index m0 = (alx_index)blockIdx.y * BM, n0 = (alx_index)blockIdx.x * BN;
  T acc[Tile::TM][Tile::TN] = {};
  typename GemmStager<Tile, T, TRANS_A, TRANS_B>::type stager;
  // A: TRANS_A means stored (K, M): tile rows run across K; B: TRANS_B means stored (N, K): along K
  if constexpr (TRANS_A) {
    stager.a.init(a + m0, M, M - m0, 0);
  } else {
    stager.a.init(a + m0 * K, K, M - m0, 0);
  }
  if constexpr (TRANS_B) {
    stager.b.init(b + n0 * K, K, N - n0, 0);
  } else {
    stager.b.init(b + n0, N, N - n0, 0);
  }
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, K, acc);

  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const alx_index m = m0 + row + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const alx_index n = n0 + col + j;
      if (n < N) c[m * N + n] = acc[i][j] + (has_bias ? bias[n] : T(0));
    }
  }
}

ALX_INSTANTIATE(gemm<float, 64, 64, false, true>)
ALX_INSTANTIATE(gemm<float, 16, 256, false, true>)
ALX_INSTANTIATE(gemm<float, 256, 16, false, true>)
ALX_INSTANTIATE(gemm<float, 64, 64, false, false>)
ALX_INSTANTIATE(gemm<float, 16, 256, false, false>)
ALX_INSTANTIATE(gemm<float, 256, 16, false, false>)
ALX_INSTANTIATE(gemm<float, 64, 64, true, false>)
ALX_INSTANTIATE(gemm<float, 16, 256, true, false>)
ALX_INSTANTIATE(gemm<float, 256, 16, true, false>)
// v2 tiles (kernels/gemm_tile.cuh's progression), float
ALX_INSTANTIATE(gemm<float, 128, 128, false, true>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, true>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, true>)
ALX_INSTANTIATE(gemm<float, 128, 128, false, false>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, false>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, false>)
ALX_INSTANTIATE(gemm<float, 128, 128, true, false>)
ALX_INSTANTIATE(gemm<float, 128, 64, true, false>)
ALX_INSTANTIATE(gemm<float, 64, 128, true, false>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, true>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, true>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, true>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, false>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, false>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, false>)
ALX_INSTANTIATE(gemm<double, 64, 64, true, false>)
ALX_INSTANTIATE(gemm<double, 16, 256, true, false>)
ALX_INSTANTIATE(gemm<double, 256, 16, true, false>)
