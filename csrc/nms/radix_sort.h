// Stable LSD radix sort of (key, index) pairs on the CPU: O(n), used instead of a
// comparison sort for the score orders of proposal and nms. Equal keys keep their input
// order, so feeding indices in increasing order gives "ties keep the lower index first".
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace frcnn {

// Sorts keys ascending, permuting idx alongside. tmp_keys/tmp_idx are scratch of size n.
// Passes whose digit is the same for every key are skipped.
template <typename K>
void radix_sort_pairs(K* keys, uint32_t* idx, K* tmp_keys, uint32_t* tmp_idx, size_t n) {
  constexpr int kBits = 11;
  constexpr int kBuckets = 1 << kBits;
  constexpr int kPasses = (sizeof(K) * 8 + kBits - 1) / kBits;
  if (n < 2) return;
  std::vector<uint32_t> hist(static_cast<size_t>(kPasses) * kBuckets, 0);
  for (size_t i = 0; i < n; ++i) {
    K k = keys[i];
    for (int p = 0; p < kPasses; ++p)
      ++hist[p * kBuckets + ((k >> (p * kBits)) & (kBuckets - 1))];
  }
  K* src_k = keys;
  uint32_t* src_i = idx;
  K* dst_k = tmp_keys;
  uint32_t* dst_i = tmp_idx;
  for (int p = 0; p < kPasses; ++p) {
    uint32_t* h = &hist[p * kBuckets];
    bool trivial = false;
    uint32_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      if (h[b] == n) trivial = true;
      const uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    if (trivial) continue;
    const int shift = p * kBits;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pos = h[(src_k[i] >> shift) & (kBuckets - 1)]++;
      dst_k[pos] = src_k[i];
      dst_i[pos] = src_i[i];
    }
    std::swap(src_k, dst_k);
    std::swap(src_i, dst_i);
  }
  if (src_k != keys) {
    std::memcpy(keys, src_k, n * sizeof(K));
    std::memcpy(idx, src_i, n * sizeof(uint32_t));
  }
}

}  // namespace frcnn
