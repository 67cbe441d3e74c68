// emu_gemm_kernels.cu: the two GEMM-shaped kernels of the CPU-runtime benchmark (C = A * B, row-major,
// M x K times K x N, float32).
//
// sgemm_register_tiled: a 64x64 tile of C per block of 64 threads, each thread holding an 8x8
//   register tile; A and B are staged through shared memory 8 columns/rows of K at a time
//   (two barriers per k-slice). Requires M, N multiples of 64 and K a multiple of 8.
// sgemm_shared_16x16: the classic barrier-heavy kernel, 16x16 threads, one output each, 16-deep
//   k-tiles in shared memory (two barriers per 16 multiply-adds). Requires multiples of 16.

#define RT_BM 64
#define RT_BN 64
#define RT_BK 8
#define RT_TM 8
#define RT_TN 8

extern "C" __global__ void sgemm_register_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                                float* __restrict__ C, int M, int N, int K) {
  __shared__ float As[RT_BK][RT_BM];  // transposed: As[k][m]
  __shared__ float Bs[RT_BK][RT_BN];
  const int tid = threadIdx.x;             // 0..63
  const int tr = tid / (RT_BN / RT_TN);    // 0..7: row of 8x8 tiles
  const int tc = tid % (RT_BN / RT_TN);    // 0..7
  // Each thread loads 8 elements of A (rows a_row + 8*i, column a_col) and 8 of B (row i,
  // column tid) per k-slice; offsets are computed once and the A and B pointers advance.
  const int a_row = tid / RT_BK, a_col = tid % RT_BK;
  A += (long long)blockIdx.y * RT_BM * K;
  B += blockIdx.x * RT_BN;
  C += (long long)blockIdx.y * RT_BM * N + blockIdx.x * RT_BN;
  float acc[RT_TM][RT_TN] = {};
  float a[RT_TM], b[RT_TN];
  for (int k0 = 0; k0 < K; k0 += RT_BK) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      As[a_col][a_row + 8 * i] = A[(long long)(a_row + 8 * i) * K + a_col];
      Bs[i][tid] = B[(long long)i * N + tid];
    }
    __syncthreads();
    A += RT_BK;
    B += (long long)RT_BK * N;
#pragma unroll
    for (int k = 0; k < RT_BK; ++k) {
#pragma unroll
      for (int i = 0; i < RT_TM; ++i) a[i] = As[k][tr * RT_TM + i];
#pragma unroll
      for (int j = 0; j < RT_TN; ++j) b[j] = Bs[k][tc * RT_TN + j];
#pragma unroll
      for (int i = 0; i < RT_TM; ++i)
#pragma unroll
        for (int j = 0; j < RT_TN; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < RT_TM; ++i)
#pragma unroll
    for (int j = 0; j < RT_TN; ++j) C[(long long)(tr * RT_TM + i) * N + tc * RT_TN + j] = acc[i][j];
}

extern "C" __global__ void sgemm_shared_16x16(const float* __restrict__ A, const float* __restrict__ B,
                                              float* __restrict__ C, int M, int N, int K) {
  __shared__ float As[16][16];
  __shared__ float Bs[16][16];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    As[ty][tx] = A[(long long)row * K + k0 + tx];
    Bs[ty][tx] = B[(long long)(k0 + ty) * N + col];
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  C[(long long)row * N + col] = acc;
}
