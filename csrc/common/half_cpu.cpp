#include "common/half_cpu.h"

#include <algorithm>

#include "common/parallel.h"

namespace frcnn {

namespace {
constexpr int64_t kPerThread = 1 << 16;  // conversions per thread (memory bound)
}

void half_to_float_n(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  const int nt = threads_for(n, kPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(s[i]);
}

void float_to_half_n(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  const int nt = threads_for(n, kPerThread);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) d[i] = float_to_half_bits(src[i]);
}

float* HalfAsFloat::alloc(int64_t n) {
  bufs_.emplace_back(new float[static_cast<size_t>(std::max<int64_t>(n, 1))]);
  return bufs_.back().get();
}

const float* HalfAsFloat::in(const void* x, int64_t n) {
  float* b = alloc(n);
  half_to_float_n(x, b, n);
  return b;
}

float* HalfAsFloat::out(void* y, int64_t n) {
  float* b = alloc(n);
  std::fill(b, b + n, 0.f);
  outs_.push_back({y, b, n});
  return b;
}

void HalfAsFloat::finish() {
  for (const Out& o : outs_) float_to_half_n(o.src, o.dst, o.n);
  outs_.clear();
}

}  // namespace frcnn
