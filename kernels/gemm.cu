// gemm.cu: general matrix product for the fully connected layers (SGEMM and DGEMM):
//
//   C[m, n] = sum_k opA(m, k) * opB(k, n) + (has_bias ? bias[n] : 0),   m < M, n < N, k < K
//
// Layout: row-major. A is (M, K) or, with TRANS_A, stored (K, M); B is (K, N) or, with TRANS_B,
// stored (N, K); C is (M, N). The linear layer's three products (alexnet_raw/ops/linear.py):
//   forward          y  = x W^T + b   gemm<.., false, true>   x (batch, in), W (out, in)
//   backward input   gx = gy W        gemm<.., false, false>
//   backward weight  gW = gy^T x      gemm<.., true, false>
// Tiling: GemmTile<BM, BN> of kernels/gemm_tile.cuh (256 threads, 4 x 4 outputs per thread,
// 16-deep K slices staged in shared memory); grid (ceil(N / BN), ceil(M / BM), 1). An operand
// stored K-contiguous is staged with consecutive threads along k, the other with consecutive
// threads along its rows, so global reads are coalesced either way. Tile shape chosen in
// alexnet_raw/ops/gemm_tiles.py (launches built in alexnet_raw/ops/linear.py).
// Reference and tests: tests/kernels/test_linear.py (torch.nn.functional.linear and autograd).
#include "common.cuh"
#include "gemm_tile.cuh"

// Tile rows are rows of the stored matrix, K-contiguous: element (r, k) of the tile = p[r*ld + k].
template <typename T>
struct RowsAlongK {
  const T* p;  // the tile's first row
  alx_index rows, K;
  __device__ T operator()(int r, alx_index k) const { return (r < rows && k < K) ? p[r * K + k] : T(0); }
};

// Tile rows are columns of the stored matrix (ld elements per stored row): element (r, k) = p[k*ld + r],
// with r fixed per thread: `p` already points at the thread's column (null past the matrix).
template <typename T>
struct RowsAcrossK {
  const T* p;
  alx_index ld, K;
  __device__ T operator()(alx_index k) const { return (p != nullptr && k < K) ? p[k * ld] : T(0); }
};

// the loader type of each operand (no <type_traits> under NVRTC)
template <bool ACROSS, typename T>
struct GemmLoader { typedef RowsAlongK<T> type; };
template <typename T>
struct GemmLoader<true, T> { typedef RowsAcrossK<T> type; };

template <typename T, int BM, int BN, bool TRANS_A, bool TRANS_B>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T)
gemm(T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias, int has_bias, alx_index M,
     alx_index N, alx_index K) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Tile::BK][Tile::BN + Tile::PAD];
  const alx_index m0 = (alx_index)blockIdx.y * BM, n0 = (alx_index)blockIdx.x * BN;
  T acc[Tile::TM][Tile::TN] = {};
  // A: TRANS_A means stored (K, M): tile rows run across K
  typename GemmLoader<TRANS_A, T>::type load_a;
  typename GemmLoader<!TRANS_B, T>::type load_b;
  if constexpr (TRANS_A) {
    const alx_index m = m0 + threadIdx.x % BM;
    load_a = {m < M ? a + m : nullptr, M, K};
  } else {
    load_a = {a + m0 * K, M - m0, K};
  }
  if constexpr (TRANS_B) {
    load_b = {b + n0 * K, N - n0, K};
  } else {
    const alx_index n = n0 + threadIdx.x % BN;
    load_b = {n < N ? b + n : nullptr, N, K};
  }
  gemm_tile_accumulate<Tile, !TRANS_A, TRANS_B>(As, Bs, load_a, load_b, 0, K, acc);

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
ALX_INSTANTIATE(gemm<double, 64, 64, false, true>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, true>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, true>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, false>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, false>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, false>)
ALX_INSTANTIATE(gemm<double, 64, 64, true, false>)
ALX_INSTANTIATE(gemm<double, 16, 256, true, false>)
ALX_INSTANTIATE(gemm<double, 256, 16, true, false>)
