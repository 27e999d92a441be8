// float16 on the CPU: every CPU kernel runs in float32 on float16 data. The inputs are widened
// to float32 (exact), the float32 kernel runs, and each output is rounded to float16 once
// (round to nearest even), so a float16 result is bitwise the float32 result of the
// float16-rounded inputs, rounded once.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace frcnn {

// IEEE binary16 <-> binary32, portable (no F16C). float -> half rounds to nearest even;
// overflow gives inf; NaN stays NaN (quiet, sign and top payload bits kept).
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t u;
  if (exp == 0x1F) {
    u = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  } else {
    const float f = static_cast<float>(mant) * 5.9604644775390625e-08f;  // mant * 2^-24, exact
    return sign ? -f : f;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_half_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  if (u >= 0x7F800000u)  // inf, NaN
    return static_cast<uint16_t>(sign | 0x7C00u | (u > 0x7F800000u ? 0x200u | (u >> 13) : 0u));
  if (u >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: inf
  if (u < 0x38800000u) {  // below 2^-14: a subnormal half (or 0); value = m * 2^-24
    if (u < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25: 0 (2^-25 ties to 0)
    const uint32_t e = u >> 23;                 // 102 .. 112
    const uint32_t m = (u & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;            // 14 .. 24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  // normal: rebias the exponent, round the 13 dropped bits to nearest even (a carry into the
  // exponent is right, up to inf)
  const uint32_t r = u + 0xC8000FFFu + ((u >> 13) & 1u);  // 0xC8000000 = (15 - 127) << 23
  return static_cast<uint16_t>(sign | (r >> 13));
}

void half_to_float_n(const void* src, float* dst, int64_t n);
void float_to_half_n(const float* src, void* dst, int64_t n);

// Runs a float32 launcher on float16 arrays:
//   HalfAsFloat h;
//   launcher(DType::kFloat32, h.in(x, nx), h.out(y, ny), ...);
//   h.finish();   // rounds every out() buffer into its float16 array
class HalfAsFloat {
 public:
  // A float32 copy of the float16 array x (n elements).
  const float* in(const void* x, int64_t n);
  // Float32 scratch of n elements, zeroed, rounded into the float16 array y by finish().
  float* out(void* y, int64_t n);
  void finish();

 private:
  float* alloc(int64_t n);
  std::vector<std::unique_ptr<float[]>> bufs_;
  struct Out {
    void* dst;
    const float* src;
    int64_t n;
  };
  std::vector<Out> outs_;
};

}  // namespace frcnn
