// emu_gemm_plain.cu: the loop nests of emu_gemm_kernels.cu written as plain C++, the baseline the
// CPU runtime is measured against. One "thread" per block computes the whole 64x64 (or 16x16)
// tile of C with ordinary loops over what the CUDA threads would do; there are no barriers, so the
// runtime calls it as an ordinary function, and blocks still spread over the OS threads.

extern "C" __global__ void sgemm_register_tiled_plain(const float* __restrict__ A, const float* __restrict__ B,
                                                      float* __restrict__ C, int M, int N, int K) {
  const long long row0 = blockIdx.y * 64LL, col0 = blockIdx.x * 64LL;
  float As[8][64], Bs[8][64];
  float acc[64][8][8];
  for (int t = 0; t < 64; ++t)
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) acc[t][i][j] = 0.f;
  for (int k0 = 0; k0 < K; k0 += 8) {
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 8; ++k) As[k][m] = A[(row0 + m) * K + k0 + k];
    for (int k = 0; k < 8; ++k)
      for (int n = 0; n < 64; ++n) Bs[k][n] = B[(long long)(k0 + k) * N + col0 + n];
    for (int t = 0; t < 64; ++t) {
      const int tr = t / 8, tc = t % 8;
      float(&c)[8][8] = acc[t];
      for (int k = 0; k < 8; ++k) {
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) c[i][j] += As[k][tr * 8 + i] * Bs[k][tc * 8 + j];
      }
    }
  }
  for (int t = 0; t < 64; ++t)
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) C[(row0 + (t / 8) * 8 + i) * N + col0 + (t % 8) * 8 + j] = acc[t][i][j];
}

extern "C" __global__ void sgemm_shared_16x16_plain(const float* __restrict__ A, const float* __restrict__ B,
                                                    float* __restrict__ C, int M, int N, int K) {
  const long long row0 = blockIdx.y * 16LL, col0 = blockIdx.x * 16LL;
  float As[16][16], Bs[16][16], acc[16][16] = {};
  for (int k0 = 0; k0 < K; k0 += 16) {
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        As[y][x] = A[(row0 + y) * K + k0 + x];
        Bs[y][x] = B[(long long)(k0 + y) * N + col0 + x];
      }
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x)
#pragma unroll
        for (int k = 0; k < 16; ++k) acc[y][x] += As[y][k] * Bs[k][x];
  }
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) C[(row0 + y) * N + col0 + x] = acc[y][x];
}
