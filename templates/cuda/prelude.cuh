// exprgen CUDA prelude: prelude.h's scalar functions on the device, plus what CUDA kernels add.
// NVRTC compiles with -default-device, so prelude.h's functions become __device__ functions and its op
// semantics (integer division, NaN handling, rounding) are the CPU's, word for word. The libm names it
// calls resolve to CUDA's math library, IEEE-accurate (no fast math, no FMA contraction: -fmad=false);
// the gcc builtins it calls, unknown to NVRTC, are mapped below onto the same CUDA functions (host
// execution, cuda/host.h, compiles with gcc, which has them).
#define EG_CUDA 1
#ifndef EG_CUDA_HOST
static inline float __builtin_sqrtf(float x) { return ::sqrtf(x); }
static inline double __builtin_sqrt(double x) { return ::sqrt(x); }
static inline float __builtin_copysignf(float x, float y) { return ::copysignf(x, y); }
static inline double __builtin_copysign(double x, double y) { return ::copysign(x, y); }
static inline float __builtin_fmaf(float x, float y, float z) { return ::fmaf(x, y, z); }
static inline double __builtin_fma(double x, double y, double z) { return ::fma(x, y, z); }
static inline float __builtin_fabsf(float x) { return ::fabsf(x); }
static inline double __builtin_fabs(double x) { return ::fabs(x); }
static inline float __builtin_floorf(float x) { return ::floorf(x); }
static inline double __builtin_floor(double x) { return ::floor(x); }
static inline float __builtin_ceilf(float x) { return ::ceilf(x); }
static inline double __builtin_ceil(double x) { return ::ceil(x); }
static inline float __builtin_truncf(float x) { return ::truncf(x); }
static inline double __builtin_trunc(double x) { return ::trunc(x); }
static inline float __builtin_nearbyintf(float x) { return ::nearbyintf(x); }
static inline double __builtin_nearbyint(double x) { return ::nearbyint(x); }
static inline bool __builtin_signbitf(float x) { return ::signbit(x); }
static inline float __builtin_nextafterf(float x, float y) { return ::nextafterf(x, y); }
static inline double __builtin_nextafter(double x, double y) { return ::nextafter(x, y); }
static inline bool __builtin_signbit(double x) { return ::signbit(x); }
#endif
// prelude.h's float GELU calls glibc's double erfc under this name; its inline exps read float bits so.
static inline double eg_wide_erfc(double x) { return ::erfc(x); }
static inline float eg_float_from_bits(int x) { return __int_as_float(x); }
static inline int eg_bits_of_float(float x) { return __float_as_int(x); }

#include "prelude.h"

namespace eg {
// Four consecutive elements, loaded and stored as one access: 16 bytes for 4-byte types (one vector
// instruction), two 16-byte accesses for 8-byte types. The pointer must be aligned to alignof.
template <class T> struct alignas(sizeof(T) * 4 < 16 ? sizeof(T) * 4 : 16) Vec4 {
  T v[4];
};
template <class T> static inline bool aligned4(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & (alignof(Vec4<T>) - 1)) == 0;
}

// __shfl_down_sync for any trivially copyable value (accumulators: numbers, bools, Arg pairs, structs of
// them), 4 bytes at a time.
template <class T> static inline T shfl_down(const T& value, int delta) {
  constexpr int words = (sizeof(T) + 3) / 4;
  int w[words] = {};
  memcpy(w, &value, sizeof(T));
  for (int k = 0; k < words; ++k) w[k] = __shfl_down_sync(0xffffffffu, w[k], delta);
  T out;
  memcpy(&out, w, sizeof(T));
  return out;
}

// The combination of every thread's accumulator, in thread 0 (other threads get partial values). A
// fixed tree: lanes within each warp, then the warps' results in warp 0, so the order of the combines,
// and hence the rounding, depends only on the block size. blockDim.x must be a multiple of 32 (all lanes
// take part in every shuffle); parts is __shared__ scratch for 32 values; every thread must call this.
template <class T, class F> static inline T block_reduce(T acc, F combine, T* parts) {
  for (int delta = 16; delta > 0; delta >>= 1) acc = combine(acc, shfl_down(acc, delta));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) parts[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = parts[lane < warps ? lane : 0];
    for (int delta = 16; delta > 0; delta >>= 1) {
      const T other = shfl_down(acc, delta);
      if (lane + delta < warps) acc = combine(acc, other);
    }
  }
  return acc;
}
}  // namespace eg
