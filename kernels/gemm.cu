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
// 16-deep K slices staged in shared memory); grid (ceil(N / BN), ceil(M / BM), ranges of K): a
// product with few blocks and a long K is split into ranges whose partial sums kernels/split_sum.cu
// adds in order (alexnet_raw/ops/gemm_tiles.py's model decides). Each thread
// stages one fixed row of each operand through one pointer moved by a slice per step (the
// K-contiguous operand at consecutive k, the other at k strided by 256 / rows), no bounds check
// except in a ragged last slice. V: the version of gemm_tile.cuh's progression (3: double-buffered,
// 4: also 16-byte loads of both operands in a block where the addresses, leading dimensions and
// the tile's rows allow, else version 3's loop).
// Kernel (tile and version) chosen in alexnet_raw/ops/gemm_tiles.py (launches built in
// alexnet_raw/ops/linear.py).
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_linear.py (torch.nn.functional.linear and autograd).
#include "common.cuh"
#include "gemm_tile.cuh"

// The stager of gemm_tile.cuh for the two stored operands: an operand stored K-contiguous is
// staged along K (StageRowsAlongK), the other across K (StageRowsAcrossK); each thread keeps one
// pointer per operand, moved by a slice per step. No per-chunk table.
template <bool ACROSS, class Tile, int R, typename T, bool VEC>
struct GemmOperand { typedef StageRowsAlongK<Tile, R, T, VEC> type; };
template <class Tile, int R, typename T, bool VEC>
struct GemmOperand<true, Tile, R, T, VEC> { typedef StageRowsAcrossK<Tile, R, T, VEC> type; };

template <class Tile, typename T, bool TRANS_A, bool TRANS_B, bool VEC>
struct GemmStager {
  typedef GemmOperand<TRANS_A, Tile, Tile::BM, T, VEC> A;
  typedef GemmOperand<!TRANS_B, Tile, Tile::BN, T, VEC> B;
  typedef StagePair<Tile, T, typename A::type, typename B::type> type;
};

// The operands' first rows and leading dimensions: A (TRANS_A: stored (K, M), tile rows across K),
// B (TRANS_B: stored (N, K), tile rows along K).
template <typename T, bool TRANS_A, bool TRANS_B>
struct GemmOperands {
  const T *a, *b;
  alx_index lda, ldb;
  __device__ GemmOperands(const T* a_, const T* b_, alx_index m0, alx_index n0, alx_index M, alx_index N, alx_index K)
      : a(TRANS_A ? a_ + m0 : a_ + m0 * K), b(TRANS_B ? b_ + n0 * K : b_ + n0), lda(TRANS_A ? M : K),
        ldb(TRANS_B ? K : N) {}
};

template <typename T, int BM, int BN, bool TRANS_A, bool TRANS_B, bool VEC, int BUFFERS>
__device__ __forceinline__ void gemm_block(T* __restrict__ c, const GemmOperands<T, TRANS_A, TRANS_B>& in,
                                           const T* __restrict__ bias, int has_bias, alx_index m0, alx_index n0,
                                           alx_index M, alx_index N, alx_index k_begin, alx_index k_end,
                                           T (&As)[BUFFERS][GemmTile<BM, BN>::BK][BM + GemmTile<BM, BN>::PAD],
                                           T (&Bs)[BUFFERS][GemmTile<BM, BN>::BK][BN + GemmTile<BM, BN>::PAD]) {
  typedef GemmTile<BM, BN> Tile;
  T acc[Tile::TM][Tile::TN] = {};
  typename GemmStager<Tile, T, TRANS_A, TRANS_B, VEC>::type stager;
  stager.a.init(in.a, in.lda, M - m0, k_begin);
  stager.b.init(in.b, in.ldb, N - n0, k_begin);
  gemm_tile_accumulate<Tile>(As, Bs, stager, k_begin, k_end, acc);

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

// c: the product (M, N), or with split K (gridDim.z ranges of k_per_split, a multiple of the
// slice depth) the range z's partial sum at c + z * M * N (kernels/split_sum.cu adds them; the
// bias then goes there, has_bias = 0 here).
template <typename T, int BM, int BN, bool TRANS_A, bool TRANS_B, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
gemm(T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ bias, int has_bias, alx_index M,
     alx_index N, alx_index K, alx_index k_per_split) {
  typedef GemmTile<BM, BN> Tile;
  typedef GemmVersion<V> Version;
  __shared__ __align__(16) T As[Version::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[Version::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  const alx_index m0 = (alx_index)blockIdx.y * BM, n0 = (alx_index)blockIdx.x * BN;
  const alx_index k_begin = (alx_index)blockIdx.z * k_per_split;
  const alx_index k_end = K - k_begin < k_per_split ? K : k_begin + k_per_split;
  T* const out = c + (alx_index)blockIdx.z * M * N;
  const GemmOperands<T, TRANS_A, TRANS_B> in(a, b, m0, n0, M, N, K);
  if constexpr (Version::VECTOR_LOADS) {
    typedef GemmStager<Tile, T, TRANS_A, TRANS_B, true> Vec;
    // a, b and the leading dimensions aligned (the same for every block: tile and split offsets
    // keep the alignment), and an operand staged across K has all of the tile's rows inside the matrix
    const bool a_rows = !TRANS_A || M - m0 >= BM, b_rows = TRANS_B || N - n0 >= BN;
    if (a_rows && b_rows && Vec::A::type::aligned(a, in.lda, 0) && Vec::B::type::aligned(b, in.ldb, 0)) {
      gemm_block<T, BM, BN, TRANS_A, TRANS_B, true>(out, in, bias, has_bias, m0, n0, M, N, k_begin, k_end, As, Bs);
      return;
    }
  }
  gemm_block<T, BM, BN, TRANS_A, TRANS_B, false>(out, in, bias, has_bias, m0, n0, M, N, k_begin, k_end, As, Bs);
}

ALX_INSTANTIATE(gemm<float, 64, 64, false, true, 1>)
ALX_INSTANTIATE(gemm<float, 16, 256, false, true, 1>)
ALX_INSTANTIATE(gemm<float, 256, 16, false, true, 1>)
ALX_INSTANTIATE(gemm<float, 64, 64, false, false, 1>)
ALX_INSTANTIATE(gemm<float, 16, 256, false, false, 1>)
ALX_INSTANTIATE(gemm<float, 256, 16, false, false, 1>)
ALX_INSTANTIATE(gemm<float, 64, 64, true, false, 1>)
ALX_INSTANTIATE(gemm<float, 16, 256, true, false, 1>)
ALX_INSTANTIATE(gemm<float, 256, 16, true, false, 1>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, true, 1>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, true, 1>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, true, 1>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, false, 1>)
ALX_INSTANTIATE(gemm<double, 16, 256, false, false, 1>)
ALX_INSTANTIATE(gemm<double, 256, 16, false, false, 1>)
ALX_INSTANTIATE(gemm<double, 64, 64, true, false, 1>)
ALX_INSTANTIATE(gemm<double, 16, 256, true, false, 1>)
ALX_INSTANTIATE(gemm<double, 256, 16, true, false, 1>)
// version 2: 8 x 8 / 8 x 4 outputs per thread (float)
ALX_INSTANTIATE(gemm<float, 128, 128, false, true, 2>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, true, 2>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, true, 2>)
ALX_INSTANTIATE(gemm<float, 128, 128, false, false, 2>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, false, 2>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, false, 2>)
ALX_INSTANTIATE(gemm<float, 128, 128, true, false, 2>)
ALX_INSTANTIATE(gemm<float, 128, 64, true, false, 2>)
ALX_INSTANTIATE(gemm<float, 64, 128, true, false, 2>)
// version 3: version 2 double-buffered (the progression's step, at 128 x 128)
ALX_INSTANTIATE(gemm<float, 128, 128, false, true, 3>)
ALX_INSTANTIATE(gemm<float, 128, 128, false, false, 3>)
ALX_INSTANTIATE(gemm<float, 128, 128, true, false, 3>)
// version 4: version 3 with 16-byte global loads
ALX_INSTANTIATE(gemm<float, 128, 128, false, true, 4>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, true, 4>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, true, 4>)
ALX_INSTANTIATE(gemm<float, 128, 128, false, false, 4>)
ALX_INSTANTIATE(gemm<float, 128, 64, false, false, 4>)
ALX_INSTANTIATE(gemm<float, 64, 128, false, false, 4>)
ALX_INSTANTIATE(gemm<float, 128, 128, true, false, 4>)
ALX_INSTANTIATE(gemm<float, 128, 64, true, false, 4>)
ALX_INSTANTIATE(gemm<float, 64, 128, true, false, 4>)
// versions 2 to 4 in double, one shape each (kernels/gemm_tile.cuh: the tests' float64 checks)
ALX_INSTANTIATE(gemm<double, 128, 128, false, true, 2>)
ALX_INSTANTIATE(gemm<double, 128, 128, false, false, 2>)
ALX_INSTANTIATE(gemm<double, 128, 128, true, false, 2>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, true, 3>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, false, 3>)
ALX_INSTANTIATE(gemm<double, 64, 64, true, false, 3>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, true, 4>)
ALX_INSTANTIATE(gemm<double, 64, 64, false, false, 4>)
ALX_INSTANTIATE(gemm<double, 64, 64, true, false, 4>)
