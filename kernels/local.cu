// local.cu: the locally connected layer (cuda-convnet's `local`): a convolution whose filters are not
// shared, with one filter bank and one bias per output position; zero padding, stride and groups
// as kernels/conv2d.cu, forward and both backwards, as small implicit GEMMs per output position (or
// input pixel) on the register-blocked tile of kernels/gemm_tile.cuh.
//
//   forward          y[n, f, oy, ox] = b[f, oy, ox] + sum_{c, fy, fx} w[oy, ox, f, c, fy, fx] * x[n, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx]
//   backward input   gx[n, g*Cg + c, iy, ix] = sum_{f, (oy, ox) covering (iy, ix)} w[oy, ox, g*Fg + f, c, iy + ph - oy*sh, ix + pw - ox*sw] * gy[n, g*Fg + f, oy, ox]
//   backward weight  gw[oy, ox, f, c, fy, fx] = sum_n gy[n, f, oy, ox] * x[n, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx]
// (f in group g = f / Fg reads channels g*Cg .. g*Cg + Cg - 1; pixels outside the input read 0, which
// also gives cuda-convnet's ceil output rule, as in conv2d.cu.) The bias gradient gb[f, oy, ox] =
// sum_n gy[n, f, oy, ox] is kernels/bias_grad.cu's per-channel sum over gy seen as (batch, F*OH*OW).
//
// Layout: NCHW x, y, gx, gy; weights (OH, OW, F, Cg, KH, KW): one (F, Cg, KH, KW) filter bank per
// output position, each as conv2d's weights; biases (F, OH, OW) (cuda-convnet's local layers: one
// bias per filter and output position); all C-contiguous. Cg = C / groups, Fg = F / groups.
// Tiling: GemmTile<BM, BN> version 1 (256 threads, 4 x 4 outputs each) at 64 x 64 or 16 x 256,
// as the issue model of alexnet_raw/ops/gemm_tiles.py picks (conv2d.cu's table: the same stagers
// and K loop); the products are small (a local layer's Fg and batch are each at most a few hundred),
// so the larger tiles of versions 2 and 3 would mostly compute padding and are not instantiated:
//   forward          one product per output position q = (oy, ox) and group: M = Fg (filters),
//                    N = batch, K = Cg*KH*KW; A = w's bank at q (K-contiguous rows,
//                    StageRowsAlongK), B = x gathered (one image window per column, conv2d's
//                    forward table ConvForwardTaps, kernels/conv_taps.cuh); grid (positions *
//                    column blocks, ceil(Fg / BM), groups)
//   backward weight  one product per position and group: M = Fg, N = Cg*KH*KW, K = batch (no split:
//                    K is one batch); A = gy at q (row f at gy[0, g*Fg + f, q], k = an image's
//                    offset from the table), B = x gathered (column (c, fy, fx) at its fixed pixel,
//                    k = an image's offset); grid as the forward's over N
//   backward input   one product per input pixel p = (iy, ix) and group, over the positions whose
//                    window covers it (oy0..oy1 x ox0..ox1, at most ceil(KH / sh) * ceil(KW / sw)):
//                    M = Cg (channels), N = batch, K = Fg * covering positions, k = (f, jy, jx);
//                    A = w gathered (row c, offset of (q, f, fy, fx) from the table), B = gy
//                    gathered (column n at gy[n, g*Fg], offset of (f, q)); a pixel no window covers
//                    (a stride longer than the kernel) has K = 0 and gets 0; grid (pixels * column
//                    blocks, ceil(Cg / BM), groups)
// Both gathered operands read the shared per-chunk table (kernels/conv_taps.cuh: each k's offsets
// computed once per 256 k, no integer division in the K loop). Deterministic: every output is one
// thread's sum over k in increasing order (no atomics, no split), the same under any block schedule.
// Index limits (the grid's x, H*W, OH*OW, Cg*KH*KW, Fg*KH*KW, F*OH*OW within int) are checked by the
// host before any launch.
// Launch geometry (tile shape, grid): alexnet_raw/ops/local.py. Reference:
// alexnet_raw/checks/torch_reference.py `local` (unfold + einsum); tests: tests/kernels/test_local.py.
#include "common.cuh"
#include "gemm_tile.cuh"
#include "conv_taps.cuh"

// Block-wide values the epilogue needs, parked in shared memory across the K loop (as conv2d.cu's
// ConvOutputSize; held in registers through it they spill at float's 64-register budget): written by
// thread 0 before the loop.
struct LocalOutputSize {
  alx_index offset;  // the output's first element of this product (its position, pixel or bank)
  int N;             // columns of the product
  int rows;          // rows of the product
  int channel0;      // the output channel of row 0 (the group's first)
  int n0, m0;        // the block's first column and row
};

// ---- forward ------------------------------------------------------------------------------------
// Block x = q * column_blocks + column block: position q = (oy, ox), columns (images) n0 .. n0 + BN - 1.
// A(m, k) = w[q, g*Fg + m, k], k = (c, fy, fx): row m at w + (q*F + g*Fg + m)*K
// B(k, n) = x[n, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx]: ConvForwardTaps with the column base
//   x[n, g*Cg, oy*sh - ph, ox*sw - pw]
template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
local_forward(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
              int has_bias, int batch, int C, int H, int W, int F, int OH, int OW, int KH, int KW, int sh, int sw,
              int ph, int pw, int groups, int column_blocks) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ LocalOutputSize out_size;
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z, Fg = s.Fg(), K = s.Cg() * s.KK();
  const int q = blockIdx.x / column_blocks, oy = q / OW, ox = q - oy * OW;
  const int n0 = (blockIdx.x - q * column_blocks) * BN;
  const int m0 = blockIdx.y * BM;
  // offset: the position's in an output plane; N: the images
  if (threadIdx.x == 0) out_size = {(alx_index)q, batch, Fg, g * Fg, n0, m0};

  ConvStager<Tile, T, StageRowsAlongK<Tile, BM, T>, ConvForwardTaps<T>, false> stager;
  stager.b.taps = table;
  __shared__ ConvForwardTaps<T> fill;
  if (threadIdx.x == 0) fill = {KW, s.KK(), H, W};
  stager.fill = &fill;
  stager.a.init(w + ((alx_index)q * F + g * Fg + m0) * K, K, Fg - m0, 0);
  stager.b.h = H;
  stager.b.w = W;
  {
    const int n = n0 + (int)threadIdx.x % BN < batch ? n0 + (int)threadIdx.x % BN : batch - 1;
    stager.b.y0 = oy * sh - ph;
    stager.b.x0 = ox * sw - pw;
    stager.b.col = (const char*)(x + ((alx_index)n * C + (alx_index)g * s.Cg()) * H * W + (alx_index)stager.b.y0 * W +
                                 stager.b.x0);
  }
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill and out_size written (the K loop may have no barrier: K = 0)
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, K, acc);

  const LocalOutputSize o = out_size;
  const alx_index plane = (alx_index)OH * OW, image = F * plane;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int m = o.m0 + row + i;
    if (m >= o.rows) continue;
    const alx_index fq = (alx_index)(o.channel0 + m) * plane + o.offset;  // (f, q) in a (F, OH, OW) array
    const T b = has_bias ? bias[fq] : T(0);
    T* out = y + (alx_index)(o.n0 + col) * image + fq;  // one row's outputs, an image apart
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      if (o.n0 + col + j < o.N) out[j * image] = acc[i][j] + b;
    }
  }
}

// ---- backward to the input ----------------------------------------------------------------------
// Block x = p * column_blocks + column block: input pixel p = (iy, ix), images n0 .. n0 + BN - 1.
// Positions covering (iy, ix): oy*sh - ph <= iy < oy*sh - ph + KH, i.e. oy0 <= oy <= oy1 (and in x).
// k = (f, jy, jx), oy = oy0 + jy, ox = ox0 + jx, q = oy*OW + ox, fy = iy + ph - oy*sh, fx = ix + pw - ox*sw:
// A(m, k) = w[q, g*Fg + f, m, fy, fx]: row m at w + (g*Fg*Cg + m)*KH*KW, a_off = q*F*Cg*KH*KW + f*Cg*KH*KW + fy*KW + fx
// B(k, n) = gy[n, g*Fg + f, q]: column base gy + (n*F + g*Fg)*OH*OW, tap off = f*OH*OW + q, always
//   inside ((dy, dx) = (0, 0) in a 1 x 1 image)
template <typename T>
struct LocalBackwardInputTaps {
  int K;  // the product's K, here for gemm_tile_accumulate to read from shared memory
  int taps, taps_x, oy0, ox0, yp, xp, sh, sw, KW, OW;  // yp, xp = iy + ph, ix + pw
  alx_index plane, bank, filter;                       // OH*OW, F*Cg*KH*KW, Cg*KH*KW
  __device__ ConvTap operator()(alx_index k, alx_index& a_off) const {
    const int kk = (int)k, f = kk / taps, r = kk - f * taps, jy = r / taps_x, jx = r - jy * taps_x;
    const int oy = oy0 + jy, ox = ox0 + jx, q = oy * OW + ox;
    a_off = (q * bank + f * filter + (yp - oy * sh) * KW + (xp - ox * sw)) * (alx_index)sizeof(T);
    return conv_tap((f * plane + q) * (alx_index)sizeof(T), 0, 0);
  }
};

// The positions covering pixel coordinate `i` (+ pad) along one dimension: [lo, hi], empty when lo > hi.
__device__ __forceinline__ void local_covering(int ip, int kernel, int stride, int outputs, int& lo, int& hi) {
  lo = ip < kernel ? 0 : (ip - kernel) / stride + 1;
  hi = ip / stride < outputs - 1 ? ip / stride : outputs - 1;
}

template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
local_backward_input(T* __restrict__ gx, const T* __restrict__ gy, const T* __restrict__ w, int batch, int C, int H,
                     int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups,
                     int column_blocks) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ __align__(16) alx_index a_table[CONV_CHUNK];
  __shared__ LocalOutputSize out_size;
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z, Cg = s.Cg(), Fg = s.Fg();
  const int p = blockIdx.x / column_blocks, iy = p / W, ix = p - iy * W;
  const int n0 = (blockIdx.x - p * column_blocks) * BN;
  const int m0 = blockIdx.y * BM;
  int oy0, oy1, ox0, ox1;
  local_covering(iy + ph, KH, sh, OH, oy0, oy1);
  local_covering(ix + pw, KW, sw, OW, ox0, ox1);
  const int taps_y = oy1 >= oy0 ? oy1 - oy0 + 1 : 0, taps_x = ox1 >= ox0 ? ox1 - ox0 + 1 : 0;
  // offset: the pixel's in an input plane; N: the images
  if (threadIdx.x == 0) out_size = {(alx_index)p, batch, Cg, g * Cg, n0, m0};

  ConvStager<Tile, T, StageTapsRows<Tile, BM, T>, LocalBackwardInputTaps<T>, true> stager;
  stager.b.taps = table;
  stager.a.offs = a_table;
  __shared__ LocalBackwardInputTaps<T> fill;
  if (threadIdx.x == 0)
    fill = {Fg * taps_y * taps_x, taps_y * taps_x, taps_x, oy0, ox0, iy + ph, ix + pw, sh, sw, KW, OW,
            (alx_index)OH * OW, (alx_index)F * Cg * s.KK(), (alx_index)Cg * s.KK()};
  stager.fill = &fill;
  stager.a.init(w + ((alx_index)g * Fg * Cg + m0) * s.KK(), s.KK(), Cg - m0);
  stager.b.h = 1;
  stager.b.w = 1;
  stager.b.y0 = 0;
  stager.b.x0 = 0;
  {
    const int n = n0 + (int)threadIdx.x % BN < batch ? n0 + (int)threadIdx.x % BN : batch - 1;
    stager.b.col = (const char*)(gy + ((alx_index)n * F + (alx_index)g * Fg) * OH * OW);
  }
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill and out_size written (the K loop may have no barrier: K = 0)
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, fill.K, acc);

  const LocalOutputSize o = out_size;
  const alx_index pixels = (alx_index)H * W;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int j = 0; j < Tile::TN; ++j) {
    const int n = o.n0 + col + j;
    if (n >= o.N) continue;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
      const int m = o.m0 + row + i;
      if (m < o.rows) gx[((alx_index)n * C + o.channel0 + m) * pixels + o.offset] = acc[i][j];
    }
  }
}

// ---- backward to the weights --------------------------------------------------------------------
// Block x = q * column_blocks + column block: position q = (oy, ox), columns n0 .. n0 + BN - 1 of
// N = Cg*KH*KW. k = img:
// A(m, k) = gy[img, g*Fg + m, q]: row m at gy + (g*Fg + m)*OH*OW + q, a_off = img*F*OH*OW
// B(k, n) = x[img, g*Cg + c, oy*sh - ph + fy, ox*sw - pw + fx], n = (c, fy, fx): column base
//   x[0, g*Cg + c, y0, x0] at the column's pixel (y0, x0) = (oy*sh - ph + fy, ox*sw - pw + fx), the
//   same for every k: tap off = img*C*H*W, (dy, dx) = (0, 0)
template <typename T>
struct LocalBackwardWeightTaps {
  alx_index image, gy_image;  // C*H*W, F*OH*OW
  __device__ ConvTap operator()(alx_index k, alx_index& a_off) const {
    a_off = k * gy_image * (alx_index)sizeof(T);
    return conv_tap(k * image * (alx_index)sizeof(T), 0, 0);
  }
};

template <typename T, int BM, int BN, int V>
__global__ void ALX_GEMM_LAUNCH_BOUNDS(T, BM, BN)
local_backward_weight(T* __restrict__ gw, const T* __restrict__ gy, const T* __restrict__ x, int batch, int C, int H,
                      int W, int F, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int groups,
                      int column_blocks) {
  typedef GemmTile<BM, BN> Tile;
  __shared__ __align__(16) T As[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BM + Tile::PAD];
  __shared__ __align__(16) T Bs[GemmVersion<V>::BUFFERS][Tile::BK][Tile::BN + Tile::PAD];
  __shared__ __align__(16) ConvTap table[CONV_CHUNK];
  __shared__ __align__(16) alx_index a_table[CONV_CHUNK];
  __shared__ LocalOutputSize out_size;
  const ConvShape s = {C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups};
  const int g = blockIdx.z, Cg = s.Cg(), Fg = s.Fg(), N = Cg * s.KK();
  const int q = blockIdx.x / column_blocks, oy = q / OW, ox = q - oy * OW;
  const int n0 = (blockIdx.x - q * column_blocks) * BN;
  const int m0 = blockIdx.y * BM;
  const alx_index plane = (alx_index)OH * OW;
  // offset: the position's bank (q*F*N); N: the bank's columns
  if (threadIdx.x == 0) out_size = {(alx_index)q * F * N, N, Fg, g * Fg, n0, m0};

  ConvStager<Tile, T, StageTapsRows<Tile, BM, T>, LocalBackwardWeightTaps<T>, true> stager;
  stager.b.taps = table;
  stager.a.offs = a_table;
  __shared__ LocalBackwardWeightTaps<T> fill;
  if (threadIdx.x == 0) fill = {(alx_index)C * H * W, F * plane};
  stager.fill = &fill;
  stager.a.init(gy + ((alx_index)g * Fg + m0) * plane + q, plane, Fg - m0);
  stager.b.h = H;
  stager.b.w = W;
  {
    const int n = n0 + (int)threadIdx.x % BN < N ? n0 + (int)threadIdx.x % BN : N - 1;
    const int c = n / s.KK(), r = n - c * s.KK(), fy = r / KW, fx = r - fy * KW;
    stager.b.y0 = oy * sh - ph + fy;
    stager.b.x0 = ox * sw - pw + fx;
    stager.b.col = (const char*)(x + ((alx_index)g * Cg + c) * H * W + (alx_index)stager.b.y0 * W + stager.b.x0);
  }
  T acc[Tile::TM][Tile::TN] = {};
  __syncthreads();  // fill and out_size written
  gemm_tile_accumulate<Tile>(As, Bs, stager, 0, batch, acc);

  const LocalOutputSize o = out_size;
  const int row = tile_thread_row<Tile>(), col = tile_thread_col<Tile>();
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int m = o.m0 + row + i;
    if (m >= o.rows) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int n = o.n0 + col + j;
      if (n < o.N) gw[o.offset + (alx_index)(o.channel0 + m) * o.N + n] = acc[i][j];
    }
  }
}

ALX_INSTANTIATE(local_forward<float, 64, 64, 1>)
ALX_INSTANTIATE(local_forward<float, 16, 256, 1>)
ALX_INSTANTIATE(local_forward<double, 64, 64, 1>)
ALX_INSTANTIATE(local_forward<double, 16, 256, 1>)
ALX_INSTANTIATE(local_backward_input<float, 64, 64, 1>)
ALX_INSTANTIATE(local_backward_input<float, 16, 256, 1>)
ALX_INSTANTIATE(local_backward_input<double, 64, 64, 1>)
ALX_INSTANTIATE(local_backward_input<double, 16, 256, 1>)
ALX_INSTANTIATE(local_backward_weight<float, 64, 64, 1>)
ALX_INSTANTIATE(local_backward_weight<float, 16, 256, 1>)
ALX_INSTANTIATE(local_backward_weight<double, 64, 64, 1>)
ALX_INSTANTIATE(local_backward_weight<double, 16, 256, 1>)
