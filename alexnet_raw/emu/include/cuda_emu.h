// cuda_emu.h: what CUDA C device code sees when the host C++ compiler builds it for the CPU runtime.
//
// Qualifiers are defined away, threadIdx/blockIdx/blockDim/gridDim read the running CUDA thread's
// context, barriers and warp primitives yield to the block scheduler (cuda_emu_runtime.h), and the
// intrinsics, vector types and atomics our kernels use get host definitions. `__shared__` and
// `extern __shared__` declarations are rewritten before compilation (alexnet_raw/emu/_translate.py)
// into calls of emu::shared_static / emu::shared_dynamic, so that every block gets its own,
// poisoned, shared memory.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#define ALX_CPU_RUNTIME 1

// ---------------------------------------------------------------------------------------------
// Qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__

// ---------------------------------------------------------------------------------------------
// Index types and built-in variables
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

namespace emu {

// One per CUDA thread of the running block.
struct ThreadState {
  uint3 idx;
  unsigned int linear;  // x + y*bx + z*bx*by
  unsigned int lane;    // linear % 32
  // scheduler bookkeeping (cuda_emu_runtime.h)
  int site;  // the barrier call site being entered, set by the translator's marks (emu::at_site)
  const char* wait_file;
  int wait_line;
  int wait_site;
  int wait_kind;
  unsigned int wait_mask;
  void* sp;
  void* stack_base;
  size_t stack_size;
  void* asan_fake_stack;
};

// One per running block (one per OS worker thread).
struct BlockState {
  uint3 idx;
  dim3 dim;
  dim3 grid;
  unsigned int nthreads;
  bool fibers;  // false: the module has no barriers and threads run to completion one after another
};

// All kernel code runs on fiber stacks of kFiberStackBytes, aligned to that size, each with this
// header at its top: the running thread is found from the stack pointer (no thread-local storage
// on the hot path, which in a dlopen'ed module costs a call per access). The header sits a
// different number of cache lines below the chunk end for each chunk ("colour"), so that the
// headers and hot frames of many fibers do not all fall into the same cache sets.
constexpr unsigned long kFiberStackBytes = 256 * 1024;
struct FiberHeader {
  ThreadState* thread;
  BlockState* block;
  void* worker;
  void* reserved;
};
inline unsigned long fiber_colour_bytes(unsigned long chunk) {
  return (((chunk / kFiberStackBytes) * 17u) & 1023u) * 64u;  // < 64 KB
}
inline FiberHeader* fiber_header_of(unsigned long chunk) {
  return reinterpret_cast<FiberHeader*>(chunk + kFiberStackBytes - 64 - fiber_colour_bytes(chunk));
}
inline FiberHeader* fiber_header() {
  unsigned long sp;
#if defined(__x86_64__)
  asm("movq %%rsp, %0" : "=r"(sp));
#else
  sp = reinterpret_cast<unsigned long>(__builtin_frame_address(0));
#endif
  return fiber_header_of(sp & ~(kFiberStackBytes - 1));
}

// Shared memory of the running block (see _translate.py for the rewriting that calls these).
void* shared_static(const void* site, size_t bytes, size_t align);
void* shared_dynamic();

// Barriers and warp exchange (cuda_emu_runtime.h).
void block_barrier(const char* file, int line);
int block_barrier_reduce(int predicate, int op, const char* file, int line);
void warp_barrier(unsigned mask, const char* file, int line);
unsigned long long& warp_slot(unsigned lane_in_block);
[[noreturn]] void abort_kernel(const char* what, const char* file, int line);

// The translator wraps every barrier and warp-primitive call as `(::emu::at_site(COLUMN), call)`:
// with the file and line that the call's default arguments record, the column identifies the call
// site, so two barriers on one source line are told apart (alexnet_raw/emu/_translate.py).
inline void at_site(int column) { fiber_header()->thread->site = column; }

}  // namespace emu

#define threadIdx (static_cast<const uint3&>(::emu::fiber_header()->thread->idx))
#define blockIdx (static_cast<const uint3&>(::emu::fiber_header()->block->idx))
#define blockDim (static_cast<const dim3&>(::emu::fiber_header()->block->dim))
#define gridDim (static_cast<const dim3&>(::emu::fiber_header()->block->grid))
#define warpSize 32

// ---------------------------------------------------------------------------------------------
// Barriers. Call-site file, line and column (emu::at_site) identify the barrier, so threads of one
// block waiting at different barriers are reported as a divergence instead of silently passing.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::emu::block_barrier(file, line);
}
inline int __syncthreads_count(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::block_barrier_reduce(p, 0, file, line);
}
inline int __syncthreads_and(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::block_barrier_reduce(p, 1, file, line);
}
inline int __syncthreads_or(int p, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::block_barrier_reduce(p, 2, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::emu::warp_barrier(mask, file, line);
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::emu::abort_kernel("__trap() called", file, line);
}
inline void __nanosleep(unsigned) {}

// ---------------------------------------------------------------------------------------------
// Warp primitives: lanes 32k..32k+31 of a block form warp k. Each primitive publishes the lane's
// value, waits until every lane named in the mask has arrived, reads, and waits again so that the
// next primitive cannot overwrite a slot that is still being read.
namespace emu {
template <class T>
inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  unsigned long long b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T from_bits(unsigned long long b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}
// kind: 0 idx, 1 up, 2 down, 3 xor
template <class T>
inline T shuffle(unsigned mask, T var, int kind, int arg, int width, const char* file, int line) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    abort_kernel("warp shuffle width must be a power of two in [1, 32]", file, line);
  const unsigned me = fiber_header()->thread->linear;
  const unsigned lane = me & 31u;
  const unsigned base = me - lane;
  warp_slot(me) = to_bits(var);
  warp_barrier(mask, file, line);
  const unsigned seg = lane & ~unsigned(width - 1);  // first lane of this lane's width-segment
  const unsigned in_seg = lane - seg;
  long src = lane;
  if (kind == 0) {
    src = seg + (unsigned(arg) & unsigned(width - 1));
  } else if (kind == 1) {
    src = (long(in_seg) >= arg) ? long(lane) - arg : long(lane);
  } else if (kind == 2) {
    src = (long(in_seg) + arg < width) ? long(lane) + arg : long(lane);
  } else {
    // PTX shfl.sync.bfly: the source is valid up to the last lane of the caller's segment, so a
    // lane may read an earlier segment (not a later one), as CUDA documents for __shfl_xor_sync
    long s = long(lane ^ unsigned(arg));
    src = s <= long(seg | unsigned(width - 1)) ? s : long(lane);
  }
  T result = var;
  if (base + unsigned(src) < fiber_header()->block->nthreads) result = from_bits<T>(warp_slot(base + unsigned(src)));
  warp_barrier(mask, file, line);
  return result;
}
inline unsigned vote(unsigned mask, int predicate, const char* file, int line) {
  const unsigned me = fiber_header()->thread->linear;
  const unsigned base = me - (me & 31u);
  warp_slot(me) = predicate ? 1ull : 0ull;
  warp_barrier(mask, file, line);
  unsigned bits = 0;
  for (unsigned l = 0; l < 32 && base + l < fiber_header()->block->nthreads; ++l)
    if ((mask >> l) & 1u)
      if (warp_slot(base + l)) bits |= 1u << l;
  warp_barrier(mask, file, line);
  return bits;
}
unsigned active_mask();
}  // namespace emu

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  return ::emu::shuffle(mask, var, 0, srcLane, width, file, line);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::shuffle(mask, var, 1, int(delta), width, file, line);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::shuffle(mask, var, 2, int(delta), width, file, line);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::emu::shuffle(mask, var, 3, laneMask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return ::emu::vote(mask, predicate, file, line);
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return ::emu::vote(mask, predicate, file, line) != 0;
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  unsigned bits = ::emu::vote(mask, predicate, file, line);
  unsigned expect = 0;
  const unsigned me = ::emu::fiber_header()->thread->linear, base = me - (me & 31u);
  for (unsigned l = 0; l < 32 && base + l < ::emu::fiber_header()->block->nthreads; ++l)
    if ((mask >> l) & 1u) expect |= 1u << l;
  return bits == expect;
}
inline unsigned __activemask() { return ::emu::active_mask(); }
inline unsigned __lanemask_lt() { return (1u << (::emu::fiber_header()->thread->linear & 31u)) - 1u; }

// ---------------------------------------------------------------------------------------------
// Atomics: real atomics, because blocks run on several OS threads at once.
namespace emu {
template <class T, class F>
inline T atomic_update(T* address, F f) {
  using Bits = std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>;
  static_assert(sizeof(T) == sizeof(Bits), "atomics on 4- and 8-byte types only");
  Bits* p = reinterpret_cast<Bits*>(address);
  Bits old_bits = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  for (;;) {
    T old_value;
    memcpy(&old_value, &old_bits, sizeof(T));
    T new_value = f(old_value);
    Bits new_bits;
    memcpy(&new_bits, &new_value, sizeof(T));
    if (__atomic_compare_exchange_n(p, &old_bits, new_bits, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
      return old_value;
  }
}
}  // namespace emu

#define EMU_INTEGER_ATOMICS(T)                                                                       \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }              \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }              \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }            \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }              \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }                \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }              \
  inline T atomicMax(T* a, T v) {                                                                    \
    return ::emu::atomic_update(a, [v](T o) { return o < v ? v : o; });                            \
  }                                                                                                  \
  inline T atomicMin(T* a, T v) {                                                                    \
    return ::emu::atomic_update(a, [v](T o) { return v < o ? v : o; });                            \
  }                                                                                                  \
  inline T atomicCAS(T* a, T compare, T v) {                                                         \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
    return compare;                                                                                  \
  }
EMU_INTEGER_ATOMICS(int)
EMU_INTEGER_ATOMICS(unsigned int)
EMU_INTEGER_ATOMICS(long long)
EMU_INTEGER_ATOMICS(unsigned long long)
#undef EMU_INTEGER_ATOMICS

inline float atomicAdd(float* a, float v) {
  return ::emu::atomic_update(a, [v](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
  return ::emu::atomic_update(a, [v](double o) { return o + v; });
}
inline float atomicExch(float* a, float v) { return ::emu::atomic_update(a, [v](float) { return v; }); }
inline unsigned int atomicInc(unsigned int* a, unsigned int limit) {
  return ::emu::atomic_update(a, [limit](unsigned o) { return o >= limit ? 0u : o + 1u; });
}
inline unsigned int atomicDec(unsigned int* a, unsigned int limit) {
  return ::emu::atomic_update(a, [limit](unsigned o) { return (o == 0u || o > limit) ? limit : o - 1u; });
}

// ---------------------------------------------------------------------------------------------
// Vector types, with CUDA's alignments.
#define EMU_VEC1(T, N, A) \
  struct __attribute__((aligned(A))) N##1 { T x; }; \
  inline N##1 make_##N##1(T x) { return N##1{x}; }
#define EMU_VEC2(T, N, A) \
  struct __attribute__((aligned(A))) N##2 { T x, y; }; \
  inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define EMU_VEC3(T, N) \
  struct N##3 { T x, y, z; }; \
  inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define EMU_VEC4(T, N, A) \
  struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
#define EMU_VECS(T, N, A1, A2, A4) EMU_VEC1(T, N, A1) EMU_VEC2(T, N, A2) EMU_VEC3(T, N) EMU_VEC4(T, N, A4)
EMU_VECS(signed char, char, 1, 2, 4)
EMU_VECS(unsigned char, uchar, 1, 2, 4)
EMU_VECS(short, short, 2, 4, 8)
EMU_VECS(unsigned short, ushort, 2, 4, 8)
EMU_VECS(int, int, 4, 8, 16)
EMU_VEC1(unsigned int, uint, 4) EMU_VEC2(unsigned int, uint, 8) EMU_VEC4(unsigned int, uint, 16)
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }  // uint3 is defined above
EMU_VECS(long long, longlong, 8, 16, 16)
EMU_VECS(unsigned long long, ulonglong, 8, 16, 16)
EMU_VECS(float, float, 4, 8, 16)
EMU_VECS(double, double, 8, 16, 16)
#undef EMU_VEC1
#undef EMU_VEC2
#undef EMU_VEC3
#undef EMU_VEC4
#undef EMU_VECS

// ---------------------------------------------------------------------------------------------
// Math: host libm for the standard functions; the device intrinsics map to their exact versions.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
__forceinline__ std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return std::is_floating_point<C>::value ? C(std::fmin(C(a), C(b))) : (C(b) < C(a) ? C(b) : C(a));
}
template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>>
__forceinline__ std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return std::is_floating_point<C>::value ? C(std::fmax(C(a), C(b))) : (C(a) < C(b) ? C(b) : C(a));
}

__forceinline__ float rsqrtf(float x) { return 1.0f / sqrtf(x); }
__forceinline__ double rsqrt(double x) { return 1.0 / sqrt(x); }
__forceinline__ float rcbrtf(float x) { return 1.0f / cbrtf(x); }
__forceinline__ float __expf(float x) { return expf(x); }
__forceinline__ float __exp10f(float x) { return powf(10.0f, x); }
__forceinline__ float __logf(float x) { return logf(x); }
__forceinline__ float __log2f(float x) { return log2f(x); }
__forceinline__ float __log10f(float x) { return log10f(x); }
__forceinline__ float __powf(float x, float y) { return powf(x, y); }
__forceinline__ float __sinf(float x) { return sinf(x); }
__forceinline__ float __cosf(float x) { return cosf(x); }
__forceinline__ float __tanf(float x) { return tanf(x); }
__forceinline__ float __fdividef(float x, float y) { return x / y; }
__forceinline__ float __frcp_rn(float x) { return 1.0f / x; }
__forceinline__ float __fsqrt_rn(float x) { return sqrtf(x); }
__forceinline__ float __fadd_rn(float a, float b) { return a + b; }
__forceinline__ float __fsub_rn(float a, float b) { return a - b; }
__forceinline__ float __fmul_rn(float a, float b) { return a * b; }
__forceinline__ float __fdiv_rn(float a, float b) { return a / b; }
__forceinline__ float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
__forceinline__ double __dadd_rn(double a, double b) { return a + b; }
__forceinline__ double __dmul_rn(double a, double b) { return a * b; }
__forceinline__ double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
__forceinline__ float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
namespace emu {
// PTX cvt from float to an integer type clamps to the destination's range and turns NaN into 0;
// a C++ cast of an out-of-range value is undefined behaviour. `r` is already rounded to an integer.
template <class I>
__forceinline__ I saturate_to(float r) {
  if (r != r) return I(0);
  if (r <= float(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (r >= float(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();  // 2^31 or 2^32
  return I(r);
}
}  // namespace emu
__forceinline__ int __float2int_rn(float x) { return ::emu::saturate_to<int>(rintf(x)); }
__forceinline__ int __float2int_rz(float x) { return ::emu::saturate_to<int>(truncf(x)); }
__forceinline__ int __float2int_rd(float x) { return ::emu::saturate_to<int>(floorf(x)); }
__forceinline__ int __float2int_ru(float x) { return ::emu::saturate_to<int>(ceilf(x)); }
__forceinline__ unsigned __float2uint_rn(float x) { return ::emu::saturate_to<unsigned>(rintf(x)); }
__forceinline__ float __int2float_rn(int x) { return float(x); }
__forceinline__ float __uint2float_rn(unsigned x) { return float(x); }
__forceinline__ int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
__forceinline__ unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
__forceinline__ float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
__forceinline__ float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
__forceinline__ long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
__forceinline__ double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
__forceinline__ unsigned __umulhi(unsigned a, unsigned b) {
  return unsigned((unsigned long long)a * (unsigned long long)b >> 32);
}
__forceinline__ int __mulhi(int a, int b) { return int((long long)a * (long long)b >> 32); }
__forceinline__ unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
__forceinline__ long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
__forceinline__ int __popc(unsigned x) { return __builtin_popcount(x); }
__forceinline__ int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
__forceinline__ int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
__forceinline__ int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
__forceinline__ int __ffs(int x) { return __builtin_ffs(x); }
__forceinline__ int __ffsll(long long x) { return __builtin_ffsll(x); }
__forceinline__ unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
__forceinline__ unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
  s &= 31u;
  return s ? (hi << s) | (lo >> (32 - s)) : hi;
}
__forceinline__ unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
  s &= 31u;
  return s ? (lo >> s) | (hi << (32 - s)) : lo;
}
template <class T>
__forceinline__ T __ldg(const T* p) { return *p; }
template <class T>
__forceinline__ T __ldcs(const T* p) { return *p; }
template <class T>
__forceinline__ T __ldcg(const T* p) { return *p; }
template <class T>
__forceinline__ void __stcs(T* p, T v) { *p = v; }
template <class T>
__forceinline__ void __stcg(T* p, T v) { *p = v; }
inline long long clock64() {
  return (long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
