// gemm_tile.cuh: the register-blocked tile product shared by every matrix-multiply kernel
// (kernels/conv2d.cu as implicit GEMM, kernels/gemm.cu for the fully connected layers).
//
// Computes one BM x BN tile of C = A * B, with A (M x K) and B (K x N) given by loader functors, so
// the same inner loop serves plain matrices and convolutions read in place (no im2col buffer).
//
// Tiling: a block of 256 threads owns a BM x BN tile of C; each thread owns a TM x TN = 4 x 4
// register tile (rows 4*(tid / (BN/4)) .. +3, columns 4*(tid % (BN/4)) .. +3). K is walked in
// BK = 16 deep slices: the block stages As[k][m] (BK x BM) and Bs[k][n] (BK x BN) in shared memory
// (rows padded by 4 elements: transposed stores of K-contiguous operands spread over banks, and
// 16-byte alignment is kept for vector loads), one barrier, then each thread does BK rank-1
// updates of its 4 x 4 tile from 4 + 4 shared loads (16 FMA per 8 loads, contiguous so the
// compiler can issue 128-bit loads), another barrier.
// Tile shapes (BM, BN): (64, 64) in general, (256, 16) when N is small (a fully connected layer's
// batch), (16, 256) when M is small (few output channels); the op picks the one that wastes the
// least work (alexnet_raw/ops/gemm_tiles.py, the one place tile shapes are chosen).
// Staging: an operand contiguous along K is read with consecutive threads on consecutive k
// (stage_k_contiguous, loader called as load(row, k)); one contiguous along M or N with
// consecutive threads on consecutive rows (stage_rows_contiguous): then every thread stages the
// same row in every slice, so its loader computes that row's address once (load(k)).
// Deterministic: each output is one thread's sum over k in increasing order.
#pragma once

#include "common.cuh"

// Register budget of every tiled kernel: 4 resident blocks of 256 threads per SM (<= 64 registers,
// 50% occupancy) in float; 2 in double, whose 4 x 4 accumulators alone take 32 registers.
#define ALX_GEMM_LAUNCH_BOUNDS(T) __launch_bounds__(256, sizeof(T) == 4 ? 4 : 2)

template <int BM_, int BN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_;
  static constexpr int BK = 16, TM = 4, TN = 4, PAD = 4;
  static constexpr int COLS = BN / TN;  // threads across a tile row
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static_assert(THREADS == 256, "tile shapes are chosen for 256 threads");
};

// Rows [row, row + TM) and columns [col, col + TN) of the block's tile belong to this thread.
template <class Tile>
__device__ __forceinline__ int tile_thread_row() {
  return (threadIdx.x / Tile::COLS) * Tile::TM;
}
template <class Tile>
__device__ __forceinline__ int tile_thread_col() {
  return (threadIdx.x % Tile::COLS) * Tile::TN;
}

// S[k][r] = load(r, k0 + k) for a BK-deep slice of R rows; consecutive threads on consecutive k.
template <class Tile, int R, typename T, class Load>
__device__ __forceinline__ void stage_k_contiguous(T (&S)[Tile::BK][R + Tile::PAD], const Load& load, alx_index k0) {
  constexpr int ROWS_PER_PASS = Tile::THREADS / Tile::BK;
  const int k = threadIdx.x % Tile::BK;
#pragma unroll
  for (int r = threadIdx.x / Tile::BK; r < R; r += ROWS_PER_PASS) S[k][r] = load(r, k0 + k);
}

// S[k][r] = load(k0 + k) for the row r = threadIdx.x % R this thread always stages.
template <class Tile, int R, typename T, class Load>
__device__ __forceinline__ void stage_rows_contiguous(T (&S)[Tile::BK][R + Tile::PAD], const Load& load, alx_index k0) {
  constexpr int K_PER_PASS = Tile::THREADS / R;
  const int r = threadIdx.x % R;
#pragma unroll
  for (int k = threadIdx.x / R; k < Tile::BK; k += K_PER_PASS) S[k][r] = load(k0 + k);
}

// acc += A[k_begin:k_end) * B[k_begin:k_end) for this thread's 4 x 4 tile. Every thread of the
// block must call it with the same range (it holds barriers). Loaders return 0 outside the matrix.
template <class Tile, bool A_K_CONTIGUOUS, bool B_K_CONTIGUOUS, typename T, class LoadA, class LoadB>
__device__ __forceinline__ void gemm_tile_accumulate(T (&As)[Tile::BK][Tile::BM + Tile::PAD],
                                                     T (&Bs)[Tile::BK][Tile::BN + Tile::PAD], const LoadA& load_a,
                                                     const LoadB& load_b, alx_index k_begin, alx_index k_end,
                                                     T (&acc)[Tile::TM][Tile::TN]) {
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
  for (alx_index k0 = k_begin; k0 < k_end; k0 += Tile::BK) {
    if constexpr (A_K_CONTIGUOUS) {
      stage_k_contiguous<Tile, Tile::BM>(As, load_a, k0);
    } else {
      stage_rows_contiguous<Tile, Tile::BM>(As, load_a, k0);
    }
    if constexpr (B_K_CONTIGUOUS) {
      stage_k_contiguous<Tile, Tile::BN>(Bs, load_b, k0);
    } else {
      stage_rows_contiguous<Tile, Tile::BN>(Bs, load_b, k0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < Tile::BK; ++k) {
      T a[Tile::TM], b[Tile::TN];
#pragma unroll
      for (int i = 0; i < Tile::TM; ++i) a[i] = As[k][row + i];
#pragma unroll
      for (int j = 0; j < Tile::TN; ++j) b[j] = Bs[k][col + j];
#pragma unroll
      for (int i = 0; i < Tile::TM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
}
