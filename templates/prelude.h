// exprgen prelude: the scalar functions op expressions call, one overload per dtype.
// No system headers: declaring the few libm and OpenMP symbols we use keeps a compile near 0.2 s.
// The float libm functions are declared simd("notinbranch") so that gcc calls glibc's libmvec vector
// variants (IEEE-correct) instead of falling back to scalar calls; -ffast-math is never used.
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
// Applies a macro to each integer type, where the generic (float) template would be wrong for them.
#define EG_SIGNED(M) M(int8_t) M(int16_t) M(int32_t) M(int64_t)
#define EG_UNSIGNED(M) M(uint8_t) M(uint16_t) M(uint32_t) M(uint64_t)

// The CPU's libm and OpenMP. CUDA kernels (cuda/prelude.cuh defines EG_CUDA and includes this file) get
// the same names from CUDA's math library instead, and gcc's builtins from shims there.
#ifndef EG_CUDA
extern "C" {
int omp_get_thread_num(void);
int omp_get_num_threads(void);
// float64 stays on glibc's scalar functions: libmvec's double variants are up to 2 ULP off on NumPy's
// validation set, which holds float64 to 1 ULP; its float variants meet the set's float32 bounds.
#define EG_DECLARE1(name) \
  __attribute__((simd("notinbranch"))) float name##f(float) noexcept; \
  double name(double) noexcept;
#define EG_DECLARE2(name) \
  __attribute__((simd("notinbranch"))) float name##f(float, float) noexcept; \
  double name(double, double) noexcept;
EG_DECLARE1(exp) EG_DECLARE1(exp2) EG_DECLARE1(expm1) EG_DECLARE1(log) EG_DECLARE1(log2)
EG_DECLARE1(log10) EG_DECLARE1(log1p) EG_DECLARE1(sin) EG_DECLARE1(cos)
EG_DECLARE1(tan) EG_DECLARE1(asin) EG_DECLARE1(acos) EG_DECLARE1(atan) EG_DECLARE1(sinh)
EG_DECLARE1(cosh) EG_DECLARE1(tanh) EG_DECLARE1(asinh) EG_DECLARE1(acosh) EG_DECLARE1(atanh)
EG_DECLARE1(erf) EG_DECLARE1(erfc)
EG_DECLARE2(atan2) EG_DECLARE2(hypot) EG_DECLARE2(pow)
double cbrt(double) noexcept;  // float cbrt is our own, below
float fmodf(float, float) noexcept;
double fmod(double, double) noexcept;
}
#endif

namespace eg {

#define EG_MATH1(name) \
  static inline float name(float x) { return ::name##f(x); } \
  static inline double name(double x) { return ::name(x); }
#define EG_MATH2(name) \
  static inline float name(float x, float y) { return ::name##f(x, y); } \
  static inline double name(double x, double y) { return ::name(x, y); }
EG_MATH1(exp) EG_MATH1(exp2) EG_MATH1(expm1) EG_MATH1(log) EG_MATH1(log2) EG_MATH1(log10)
EG_MATH1(log1p) EG_MATH1(sin) EG_MATH1(cos) EG_MATH1(tan) EG_MATH1(asin)
EG_MATH1(acos) EG_MATH1(atan) EG_MATH1(sinh) EG_MATH1(cosh) EG_MATH1(tanh) EG_MATH1(asinh)
EG_MATH1(acosh) EG_MATH1(atanh) EG_MATH1(erf) EG_MATH1(erfc)
EG_MATH2(atan2) EG_MATH2(hypot) EG_MATH2(pow) EG_MATH2(fmod)
static inline double cbrt(double x) { return ::cbrt(x); }

// Builtins the compiler inlines as single instructions (sqrt, round*, and, or, xor on the sign bit).
static inline float sqrt(float x) { return __builtin_sqrtf(x); }
static inline double sqrt(double x) { return __builtin_sqrt(x); }
// x*y+z with one rounding, for the fast-math rule that contracts a multiply-add; integers need no care.
template <class T> static inline T fma(T x, T y, T z) { return x * y + z; }
template <> inline float fma(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
template <> inline double fma(double x, double y, double z) { return __builtin_fma(x, y, z); }
static inline float copysign(float x, float y) { return __builtin_copysignf(x, y); }
static inline double copysign(double x, double y) { return __builtin_copysign(x, y); }
static inline float fabs(float x) { return __builtin_fabsf(x); }
static inline double fabs(double x) { return __builtin_fabs(x); }

// Rounding: integers and bools are already integral (NumPy keeps their dtype).
template <class T> static inline T floor(T x) { return x; }
template <class T> static inline T ceil(T x) { return x; }
template <class T> static inline T trunc(T x) { return x; }
template <class T> static inline T round_even(T x) { return x; }
template <> inline float floor(float x) { return __builtin_floorf(x); }
template <> inline double floor(double x) { return __builtin_floor(x); }
template <> inline float ceil(float x) { return __builtin_ceilf(x); }
template <> inline double ceil(double x) { return __builtin_ceil(x); }
template <> inline float trunc(float x) { return __builtin_truncf(x); }
template <> inline double trunc(double x) { return __builtin_trunc(x); }
// nearbyint rounds half to even in the default rounding mode, as np.round does.
template <> inline float round_even(float x) { return __builtin_nearbyintf(x); }
template <> inline double round_even(double x) { return __builtin_nearbyint(x); }

// Classification: integers are never NaN or infinite.
template <class T> static inline bool isnan(T x) { return x != x; }
template <class T> static inline bool isinf(T x) { return x == T(1) / T(0) || x == -T(1) / T(0); }
template <class T> static inline bool isfinite(T x) { return !isnan(x) && !isinf(x); }
template <class T> static inline bool signbit(T x) { return x < 0; }
#define EG_NEVER_INF(T) template <> inline bool isinf(T) { return false; }
EG_SIGNED(EG_NEVER_INF) EG_UNSIGNED(EG_NEVER_INF) EG_NEVER_INF(bool)
template <> inline bool signbit(float x) { return __builtin_signbitf(x); }
template <> inline bool signbit(double x) { return __builtin_signbit(x); }

// Comparisons. NumPy 2 compares int64 with uint64 exactly (their common dtype, float64, would round;
// C++ would turn a negative int64 into a huge uint64); every other pair meets in its common dtype.
template <class X, class Y> static inline bool equal(X x, Y y) { return x == y; }
template <class X, class Y> static inline bool not_equal(X x, Y y) { return x != y; }
template <class X, class Y> static inline bool less(X x, Y y) { return x < y; }
template <class X, class Y> static inline bool less_equal(X x, Y y) { return x <= y; }
template <class X, class Y> static inline bool greater(X x, Y y) { return x > y; }
template <class X, class Y> static inline bool greater_equal(X x, Y y) { return x >= y; }
static inline bool equal(int64_t x, uint64_t y) { return x >= 0 && uint64_t(x) == y; }
static inline bool equal(uint64_t x, int64_t y) { return y >= 0 && x == uint64_t(y); }
static inline bool less(int64_t x, uint64_t y) { return x < 0 || uint64_t(x) < y; }
static inline bool less(uint64_t x, int64_t y) { return y >= 0 && x < uint64_t(y); }
#define EG_MIXED_COMPARISONS(A, B)                                                              \
  static inline bool not_equal(A x, B y) { return !equal(x, y); }                               \
  static inline bool less_equal(A x, B y) { return less(x, y) || equal(x, y); }                 \
  static inline bool greater(A x, B y) { return less(y, x); }                                   \
  static inline bool greater_equal(A x, B y) { return less(y, x) || equal(x, y); }
EG_MIXED_COMPARISONS(int64_t, uint64_t) EG_MIXED_COMPARISONS(uint64_t, int64_t)

// NaN-propagating like np.maximum / np.minimum (the first NaN wins; ties keep the second operand).
template <class T> static inline T maximum(T x, T y) { return (x > y || isnan(x)) ? x : y; }
template <class T> static inline T minimum(T x, T y) { return (x < y || isnan(x)) ? x : y; }

// |INT_MIN| wraps to INT_MIN as in NumPy; computed unsigned so it is defined behaviour.
template <class T> static inline T absolute(T x) { return x < 0 ? T(0) - x : x; }
template <> inline float absolute(float x) { return __builtin_fabsf(x); }
template <> inline double absolute(double x) { return __builtin_fabs(x); }
template <> inline bool absolute(bool x) { return x; }

// np.sign: NaN stays NaN, -0.0 gives 0.0.
template <class T> static inline T sign(T x) { return x > 0 ? T(1) : x < 0 ? T(-1) : x == 0 ? T(0) : x; }

// Integer reciprocal as NumPy computes it, through double: 1/0 is inf, which x86 converts to INT_MIN,
// and every other quotient truncates to 1, -1 or 0. Written in integers: the double round trip let gcc
// fold (double)(int)(1.0 / x) into trunc(1.0 / x) when a float op came next (-0.0 for x = -2, inf for 0).
template <class T> static inline T reciprocal(T x) { return T(1) / x; }
template <> inline int32_t reciprocal(int32_t x) { return x == 0 ? -2147483647 - 1 : x == 1 || x == -1 ? x : 0; }
template <> inline int64_t reciprocal(int64_t x) { return x == 0 ? -9223372036854775807L - 1 : x == 1 || x == -1 ? x : 0; }
// Narrower and unsigned types keep the low bits of that conversion of inf, which are 0.
#define EG_SMALL_RECIPROCAL(T) template <> inline T reciprocal(T x) { return x == 1 || x == T(-1) ? x : 0; }
EG_SMALL_RECIPROCAL(int8_t) EG_SMALL_RECIPROCAL(int16_t)
#define EG_UNSIGNED_RECIPROCAL(T) template <> inline T reciprocal(T x) { return x == 1; }
EG_UNSIGNED(EG_UNSIGNED_RECIPROCAL)

// Floor division and Python-style remainder. NumPy's float version (npy_divmod): fmod, then fix the
// sign and snap the quotient; division by zero gives fmod's NaN and a/b.
template <class T> static inline T remainder(T a, T b) {
  if (b == 0) return fmod(a, b);
  T mod = fmod(a, b);
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = copysign(T(0), b);
  }
  return mod;
}
template <class T> static inline T floor_divide(T a, T b) {
  if (b == 0) return a / b;
  T mod = fmod(a, b);
  T div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
  if (div == 0) return copysign(T(0), a / b);
  T floordiv = floor(div);
  if (div - floordiv > T(0.5)) floordiv += T(1);
  return floordiv;
}
// float32 through float64: in float, a - fmod(a, b) and its quotient each round, so the floor is lost once
// the quotient passes 2**22 (NumPy's float32 loop is off by one there: 8781.423f // -0.00075551466f gives
// -11623102 for -11623101). For float32 operands both steps are exact in double, and the float32 result
// is the float64 one rounded once, the truth every float32 kernel is measured against.
template <> inline float floor_divide(float a, float b) { return float(floor_divide(double(a), double(b))); }
// Integers: division by zero gives 0 and MIN // -1 wraps to MIN, as in NumPy (no trap).
#define EG_INT_DIVISION(T)                                                      \
  template <> inline T floor_divide(T a, T b) {                                 \
    if (b == 0) return 0;                                                       \
    if (b == -1) return T(0) - a;                                               \
    T q = a / b;                                                                \
    return ((a % b != 0) && ((a < 0) != (b < 0))) ? q - 1 : q;                  \
  }                                                                             \
  template <> inline T remainder(T a, T b) {                                    \
    if (b == 0 || b == -1) return 0;                                            \
    T r = a % b;                                                                \
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;                        \
  }
EG_SIGNED(EG_INT_DIVISION)
#define EG_UINT_DIVISION(T)                                                     \
  template <> inline T floor_divide(T a, T b) { return b == 0 ? 0 : a / b; }    \
  template <> inline T remainder(T a, T b) { return b == 0 ? 0 : a % b; }
EG_UNSIGNED(EG_UINT_DIVISION)

// Conversions (astype). A float becomes an 8- or 16-bit integer through int32, and an unsigned one through
// int64 where negative, as NumPy's C casts do on x86-64: written directly, gcc folds (float)(int8_t)x into
// trunc(x), which keeps -0.0 (NumPy's round trip gives 0.0), and vector conversions to unsigned saturate
// where NumPy's wrap (-1.0 gives 2**32 - 1 either way; -7.0 gives 2**32 - 7 in NumPy).
template <class To, class From> static inline To convert(From x, To) { return To(x); }
#define EG_FLOAT_TO(To, Via)                                                                    \
  static inline To convert(float x, To) { return To(Via(x)); }                                  \
  static inline To convert(double x, To) { return To(Via(x)); }
EG_FLOAT_TO(int8_t, int32_t) EG_FLOAT_TO(int16_t, int32_t) EG_FLOAT_TO(uint8_t, int32_t)
EG_FLOAT_TO(uint16_t, int32_t) EG_FLOAT_TO(uint32_t, int64_t)
static inline uint64_t convert(float x, uint64_t) { return x < 0 ? uint64_t(int64_t(x)) : uint64_t(x); }
static inline uint64_t convert(double x, uint64_t) { return x < 0 ? uint64_t(int64_t(x)) : uint64_t(x); }

// Bitwise. ~ of a bool is not (C++ would make ~true true). Shifts as NumPy defines them where C++ does
// not: a count outside [0, width) gives 0, or the sign for a right shift; a left shift works on the
// unsigned bits, so negative values shift too (their bits wrap as NumPy's do).
template <class T> static inline T invert(T x) { return T(~x); }
template <> inline bool invert(bool x) { return !x; }
template <class T> static inline T left_shift(T x, T n) {
  return n >= 0 && n < T(8 * sizeof(T)) ? T((uint64_t)x << n) : T(0);
}
template <class T> static inline T right_shift(T x, T n) {
  return n >= 0 && n < T(8 * sizeof(T)) ? T(x >> n) : x < 0 ? T(-1) : T(0);
}

// Powers: floats through libm; integers by squaring, wrapping on overflow like NumPy. NumPy raises for a
// negative integer exponent; exprgen gives the truncated value 1/x**-n (0 unless |x| == 1).
template <class T> static inline T power(T x, T n) {
  if (n < 0) return x == 1 ? T(1) : x == -1 ? ((n & 1) ? T(-1) : T(1)) : T(0);
  T result = 1;
  while (n) {
    if (n & 1) result *= x;
    x *= x;
    n >>= 1;
  }
  return result;
}
template <> inline float power(float x, float y) { return pow(x, y); }
template <> inline double power(double x, double y) { return pow(x, y); }
template <> inline bool power(bool x, bool y) { return x || !y; }

// np.logaddexp: equal arguments (infinities of one sign too) give x + log(2), others the larger plus
// log1p(exp(-|x - y|)); a NaN difference is the result.
template <class T> static inline T logaddexp(T x, T y) {
  if (x == y) return x + T(0.6931471805599453094172321214581766);
  const T d = x - y;
  return d > 0 ? x + log1p(exp(-d)) : d <= 0 ? y + log1p(exp(d)) : d;
}
static inline float nextafter(float x, float y) { return __builtin_nextafterf(x, y); }
static inline double nextafter(double x, double y) { return __builtin_nextafter(x, y); }

// 1 / (1 + exp(-x)) as written underflows to 0 where the result is still a subnormal (x < -87 in
// float32): for negative x use exp(x) / (1 + exp(x)). One exp either way.
template <class T> static inline T logistic(T x) {
  const T e = exp(-fabs(x));
  return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// GELU. 1 + erf(x/sqrt2) and 1 + tanh(u) cancel for negative x (all digits lost below x = -5), so
// these use erfc and 1 + tanh(u) = 2 * logistic(2u). Both then magnify the rounding of their argument
// (erfc(t) by 2t^2, logistic(z) by |z|: ~100 at x = -10), so the argument must carry more than float's
// precision: float gelu computes in double, float gelu_tanh in float pairs (below).
static inline double gelu(double x) { return 0.5 * x * erfc(-x * 0.7071067811865476); }
static inline double gelu_tanh(double x) {
  return x * logistic(2.0 * (0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
}  // namespace eg

// Float gelu works in double through libmvec's vector erfc (bound to the same glibc symbol under another
// name): its last-bit error vanishes in the rounding to float, and it keeps the loop vectorised. The
// float64 ops themselves keep glibc's scalar functions (see the top).
#ifndef EG_CUDA
extern "C" {
__attribute__((simd("notinbranch"))) double eg_wide_erfc(double) noexcept __asm__("erfc");
}
static inline float eg_float_from_bits(int32_t bits) { return __builtin_bit_cast(float, bits); }
static inline int32_t eg_bits_of_float(float x) { return __builtin_bit_cast(int32_t, x); }
#endif

namespace eg {
static inline float gelu(float x) { return (float)(0.5 * (double)x * eg_wide_erfc(-(double)x * 0.7071067811865476)); }

// Float cbrt, not libmvec's: its AVX2 variant (the one x86-64-v3 binaries call) is 3 ULP off on NumPy's
// validation set, which allows 2. fdlibm's method instead: a 5-bit guess from the exponent bits (bits / 3
// plus a bias), then two Halley steps in double, ~1e-15 relative, so the one rounding to float is
// correct: it equals (float)cbrt((double)x) on all 2^32 inputs (checked exhaustively at -march=native,
// AVX-512, and tested on NumPy's set at every ISA level). Subnormals are scaled by 2^24 first (their bits
// hold no exponent); 0, inf and NaN are their own cube roots. Vectorises: integer and double lanes only.
static inline float cbrt(float x) {
  const float a = __builtin_fabsf(x);
  const bool subnormal = a < 1.17549435e-38f;
  const int32_t scaled_bits = eg_bits_of_float(subnormal ? a * 16777216.0f : a);
  double y = (double)eg_float_from_bits(scaled_bits / 3 + 709958130) * (subnormal ? 0.00390625 : 1.0);
  const double d = a;
  for (int step = 0; step < 2; ++step) {
    const double cube = y * y * y;
    y *= (cube + d + d) / (cube + cube + d);
  }
  return (a == 0.0f || !(a <= 3.40282347e38f)) ? x : __builtin_copysignf((float)y, x);
}

// x * y + z with one rounding where the target has FMA; elsewhere two (used only where that is enough).
#if defined(__FMA__) || defined(EG_CUDA)
static inline float mul_add(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
static inline float two_product_error(float x, float y, float p) { return __builtin_fmaf(x, y, -p); }
#else
static inline float mul_add(float x, float y, float z) { return x * y + z; }
// x * y - p exactly, for p = x * y rounded (Dekker's product: each factor split into two 12-bit halves).
static inline float two_product_error(float x, float y, float p) {
  const float xs = x * 4097.0f, xh = xs - (xs - x), xl = x - xh;
  const float ys = y * 4097.0f, yh = ys - (ys - y), yl = y - yh;
  return ((xh * yh - p) + xh * yl + xl * yh) + xl * yl;
}
#endif

// The inline exps below (gelu_tanh, logistic) round k with ROUND (adding 1.5 * 2^23 to a float below 2^22
// leaves the nearest integer in its low bits) and keep their result scaled by 2^64 until the last multiply,
// so that a subnormal result rounds once. 2^(64 - k) from the rounded sum's bits (0x4B400000 + k): k = 191
// gives 0, the scale both use past their caps.
constexpr float ROUND = 12582912.0f;
static inline float scale_two_to_64_minus_k(float k_rounding) {
  return eg_float_from_bits((0x4B400000 + 191 - eg_bits_of_float(k_rounding)) << 23);
}

// Float gelu_tanh = x * logistic(z), z = x (C1 + C2 x^2) = 2 sqrt(2/pi) (x + 0.044715 x^3), all in float
// so it runs 16 lanes wide. logistic(z) magnifies the rounding of z by |z| (~100 at x = -10), so z is
// carried as a float pair, in units of ln 2: y = |z| / ln 2 = D1 |x| + D2 |x|^3 from error-free products
// and one exact sum (constants split in two floats likewise). Then exp(-|z|) = 2^-y = 2^-k (1 + p(r))
// with k = round(y) and r = (y - k) + the low parts (y - k is exact, so nothing of y's low part is lost).
// The result is scaled by 2^64 until the last multiply, so results deep in the tail round once into
// subnormals. |x| is capped at 11.68 (there y rounds to k = 191, which makes the scale 0: results below
// float's range become 0 or x exactly, and -inf gives NaN as x * 0 does in the formula; a NaN x stays NaN
// through the division), so no branch is needed past the cap. About 50 vector instructions for 16
// elements, and the time is their number (an L1-resident loop issues ~1.7 a cycle): each saved one shows.
// Measured: <= 2.6 ULP from the exact value over 39M float32 inputs with FMA, <= 2.8 without.
static inline float gelu_tanh(float x) {
  const float D1 = 2.3022082f, D1_LO = 1.2948402e-08f;     // 2 sqrt(2/pi) / ln 2
  const float D2 = 0.10294324f, D2_LO = -2.0161985e-09f;   // 2 sqrt(2/pi) 0.044715 / ln 2
  // min(|x|, cap) on the bits (an integer min for non-negative floats): a float compare here lets gcc
  // fold the capped case through every step below and blend twice the work.
  const int32_t abs_bits = eg_bits_of_float(__builtin_fabsf(x)), cap = eg_bits_of_float(11.68f);
  const float ax = eg_float_from_bits(abs_bits < cap ? abs_bits : cap);
  const float t = ax * ax, t_lo = two_product_error(ax, ax, t);
  const float c = ax * t, c_lo = mul_add(ax, t_lo, two_product_error(ax, t, c));                  // |x|^3
  const float m = D2 * c, m_lo = mul_add(D2, c_lo, mul_add(D2_LO, c, two_product_error(D2, c, m)));
  const float n = D1 * ax, n_lo = mul_add(D1_LO, ax, two_product_error(D1, ax, n));
  // Fast2Sum, the larger term first (which one is larger turns at |x| = 4.7): one instruction fewer than TwoSum
  const float big = n > m ? n : m, small = n > m ? m : n;
  const float y = big + small, y_lo = small - (y - big);
  const float k_rounding = y + ROUND, k = k_rounding - ROUND;
  const float r = (y - k) + ((y_lo + m_lo) + n_lo);
  // 2^-r - 1 on |r| <= 1/2 + 2^-20: r P(r), P of degree 5 fitted to (2^-r - 1) / r on Chebyshev nodes
  // (mpmath.chebyfit; coefficients rounded to float: within 1e-8 of 2^-r, a sixth of float's rounding)
  const float p = r * mul_add(mul_add(mul_add(mul_add(mul_add(1.5453163e-04f, r, -1.3390863e-03f), r, 9.618083e-03f), r,
                  -5.550357e-02f), r, 2.402265e-01f), r, -6.931472e-01f);
  const float scale = scale_two_to_64_minus_k(k_rounding);
  const float e = mul_add(p, scale, scale) * 0x1p-64f;                  // exp(-|z|)
  const float q = x / (1.0f + e);                                       // one division for either side
  // x < 0: q e. q * scale is exact (no overflow below the cap, 0 beyond it, where q (1 + p) could overflow)
  const float q_scaled = q * scale;
  // x * logistic(z) has x's sign, zeros too (q * (1 + p) can round to a zero of the other sign)
  return __builtin_copysignf(x >= 0.0f ? q : mul_add(q_scaled, p, q_scaled) * 0x1p-64f, x);
}

// Float logistic with its exp inline, as in gelu_tanh: e = exp(-|x|) = 2^-k (1 + p(r)), r = k ln2 - |x|
// (ln 2 in two parts, the first exact times k), p a polynomial of degree 6 fitted to e^r - 1 (within 1e-8;
// mpmath.chebyfit of (e^r - 1 - r) / r^2, coefficients rounded to float), kept scaled by 2^64 so that a
// subnormal result rounds once; one division serves either sign. ~35 vector instructions for 16 elements
// and no call, so the divider's throughput is now the bound: 0.51 -> 0.41 ns per element in L1 against
// the generic form with libmvec's expf. |x| is capped at 132.5, where k = 191 makes the scale 0 (results
// 0 or 1 exactly); a NaN passes the cap and stays NaN. Measured <= 2.4 ULP from the exact value over 61M
// float32 inputs, with and without FMA (the generic form: 3.6).
static inline float logistic(float x) {
  const float abs_x = __builtin_fabsf(x), ax = abs_x > 132.5f ? 132.5f : abs_x;
  const float k_rounding = mul_add(ax, 1.4426950408889634f, ROUND), k = k_rounding - ROUND;
  const float r = mul_add(k, 1.4286068203094172e-06f, mul_add(k, 0.693145751953125f, -ax));
  const float p = mul_add(r * r, mul_add(mul_add(mul_add(mul_add(1.3926177e-03f, r, 8.363173e-03f), r,
                                                         4.1666556e-02f), r, 1.6666578e-01f), r, 0.5f), r);
  const float scale = scale_two_to_64_minus_k(k_rounding);
  const float e_scaled = mul_add(p, scale, scale);
  const float denominator = 1.0f + e_scaled * 0x1p-64f;
  return ((x >= 0.0f ? 0x1p64f : e_scaled) / denominator) * 0x1p-64f;
}

}  // namespace eg

// ---- Memory -----------------------------------------------------------------------------------------
namespace eg {
// Kernels read each contiguous input as a stream, which the hardware prefetcher alone leaves latency-
// bound on these VMs (a float32 sum reached ~10 GB/s per core, ~14 with this; sigmoid and gelu over 1e7
// floats ran 10-20% faster): loops ask for the line 4 KB ahead of where they read. Prefetches never
// fault, so running past the row (into the next row, usually the next work) or past the array is
// harmless; the address is formed as an integer because pointer arithmetic beyond the array would not be.
// (CUDA kernels do not prefetch.)
#ifndef EG_CUDA
template <class T> static inline void prefetch(const T* at, int byte) {
  __builtin_prefetch((const void*)((uint64_t)at + 4096 + byte));
}

// Large outputs are written with streaming (non-temporal) stores: a plain store first reads the line it
// fills (write-allocate), so writing N bytes moved 2N; and an output this large would not stay in cache
// for its reader anyway. Sigmoid over 3e7 floats: 11.2-12.3 -> 9.2-9.8 ms, over 1e7: 3.2-3.6 -> 2.8-3.2 ms.
// Below STREAM_BYTES of output per kernel call the plain stores keep the result in cache for what reads
// it next. A streamed block is whole 64-byte lines from a line boundary; each thread fences its streaming
// stores before it finishes, so the result is in memory when the kernel returns.
constexpr int64_t STREAM_BYTES = 16 << 20;
// Elements of `size` bytes from `at` to the next 64-byte boundary; -1 where `at` is not element-aligned.
static inline int64_t elements_to_line(const void* at, int64_t size) {
  const uint64_t address = (uint64_t)at;
  return address % size ? -1 : (int64_t)(((64 - address % 64) % 64) / size);
}
// The vector type may alias: a block of any element type is read through it (as immintrin.h's are).
#if defined(__x86_64__)
#if defined(__AVX512F__)
typedef float StreamVector __attribute__((vector_size(64), may_alias));
static inline void stream_vector(float* to, StreamVector v) { __builtin_ia32_movntps512(to, v); }
#elif defined(__AVX__)
typedef float StreamVector __attribute__((vector_size(32), may_alias));
static inline void stream_vector(float* to, StreamVector v) { __builtin_ia32_movntps256(to, v); }
#else
typedef float StreamVector __attribute__((vector_size(16), may_alias));
static inline void stream_vector(float* to, StreamVector v) { __builtin_ia32_movntps(to, v); }
#endif
// `bytes` (whole lines) from `from` to `to`: streamed where `to` is on a line boundary, else copied.
static inline void stream_block(void* to, const void* from, int bytes) {
  if ((uint64_t)to % 64) {
    __builtin_memcpy(to, from, bytes);
    return;
  }
  for (int b = 0; b < bytes; b += (int)sizeof(StreamVector))
    stream_vector((float*)((char*)to + b), *(const StreamVector*)((const char*)from + b));
}
static inline void stream_fence() { __builtin_ia32_sfence(); }
#else
static inline void stream_block(void* to, const void* from, int bytes) { __builtin_memcpy(to, from, bytes); }
static inline void stream_fence() {}
#endif
#endif
}  // namespace eg

// ---- Reductions -------------------------------------------------------------------------------------
namespace eg {
// Identities of max and min, typed by the accumulator they start.
template <class T> static inline T lowest(T) { return T(-1) / T(0); }
template <class T> static inline T highest(T) { return T(1) / T(0); }
#define EG_LIMITS(T, LOW, HIGH)                                                               \
  template <> inline T lowest(T) { return LOW; }                                                \
  template <> inline T highest(T) { return HIGH; }
EG_LIMITS(int8_t, -128, 127) EG_LIMITS(int16_t, -32768, 32767)
EG_LIMITS(int32_t, (int32_t)0x80000000u, 0x7fffffff)
EG_LIMITS(int64_t, (int64_t)0x8000000000000000ull, 0x7fffffffffffffffll)
EG_LIMITS(uint8_t, 0, 255) EG_LIMITS(uint16_t, 0, 65535) EG_LIMITS(uint32_t, 0, 0xffffffffu)
EG_LIMITS(uint64_t, 0, 0xffffffffffffffffull)
template <> inline bool lowest(bool) { return false; }
template <> inline bool highest(bool) { return true; }

// argmax/argmin accumulate (value, index): the best value wins, NaN beats everything (as in NumPy), and a
// tie keeps the lower index, so merging partial results in any order gives NumPy's first occurrence.
template <class T> struct Arg {
  T value;
  int64_t index;
};
template <class T> static inline Arg<T> lowest(Arg<T>) { return {lowest(T()), 0x7fffffffffffffffll}; }
template <class T> static inline Arg<T> highest(Arg<T>) { return {highest(T()), 0x7fffffffffffffffll}; }
template <class T> static inline Arg<T> better_max(Arg<T> a, Arg<T> b) {
  if (isnan(a.value) || isnan(b.value))
    return isnan(a.value) && (!isnan(b.value) || a.index < b.index) ? a : b;
  return a.value > b.value || (a.value == b.value && a.index < b.index) ? a : b;
}
template <class T> static inline Arg<T> better_min(Arg<T> a, Arg<T> b) {
  if (isnan(a.value) || isnan(b.value))
    return isnan(a.value) && (!isnan(b.value) || a.index < b.index) ? a : b;
  return a.value < b.value || (a.value == b.value && a.index < b.index) ? a : b;
}
}  // namespace eg
