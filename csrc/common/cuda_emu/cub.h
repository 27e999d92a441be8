// The two CUB device algorithms the kernels use, on the host, with CUB's signatures and
// contract: a call with d_temp_storage == nullptr only sets temp_storage_bytes; a call with
// less temporary storage than asked for returns cudaErrorInvalidValue (as CUB's
// AliasTemporaries does); results as CUB's (a stable radix sort on bits [begin_bit, end_bit)
// of unsigned keys, items outside every segment left untouched; an exclusive prefix sum).
// The temporary storage is really used, so a workspace too small or overlapping other
// buffers shows up in the results.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>

#include "common/cuda_emu/cuda_emu.h"

namespace cub {

struct DeviceSegmentedRadixSort {
  template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT,
            typename EndOffsetIteratorT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out,
                               const ValueT* d_values_in, ValueT* d_values_out, int num_items,
                               int num_segments, BeginOffsetIteratorT d_begin_offsets,
                               EndOffsetIteratorT d_end_offsets, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_integral<KeyT>::value && std::is_unsigned<KeyT>::value,
                  "cuda_emu: cub::DeviceSegmentedRadixSort is emulated for unsigned integer "
                  "keys only");
    (void)stream;
    // scratch: (masked key, position) per item
    const size_t need = 256 + static_cast<size_t>(num_items < 0 ? 0 : num_items) *
                                  (sizeof(KeyT) + sizeof(ValueT) + sizeof(int));
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need || num_items < 0 || num_segments < 0 || begin_bit < 0 ||
        end_bit > int(sizeof(KeyT) * 8) || begin_bit > end_bit)
      return cudaErrorInvalidValue;
    if (num_items == 0 || num_segments == 0) return cudaSuccess;
    const int bits = end_bit - begin_bit;
    const KeyT mask = bits >= int(sizeof(KeyT) * 8) ? ~KeyT(0) : KeyT((KeyT(1) << bits) - 1);
    char* t = static_cast<char*>(d_temp_storage);
    KeyT* keys = reinterpret_cast<KeyT*>(t);
    ValueT* vals = reinterpret_cast<ValueT*>(t + num_items * sizeof(KeyT));
    int* order = reinterpret_cast<int*>(t + num_items * (sizeof(KeyT) + sizeof(ValueT)));
    for (int s = 0; s < num_segments; ++s) {
      const int b = d_begin_offsets[s], e = d_end_offsets[s];
      if (e <= b) continue;
      if (b < 0 || e > num_items) return cudaErrorInvalidValue;
      const int n = e - b;
      // copies first: the output may alias the input (CUB's DoubleBuffer aside, it may not,
      // but the copies make the emulation independent of that)
      std::memcpy(keys, d_keys_in + b, n * sizeof(KeyT));
      std::memcpy(vals, d_values_in + b, n * sizeof(ValueT));
      for (int i = 0; i < n; ++i) order[i] = i;
      std::stable_sort(order, order + n, [&](int x, int y) {
        return ((keys[x] >> begin_bit) & mask) < ((keys[y] >> begin_bit) & mask);
      });
      for (int i = 0; i < n; ++i) {
        d_keys_out[b + i] = keys[order[i]];
        d_values_out[b + i] = vals[order[i]];
      }
    }
    return cudaSuccess;
  }
};

struct DeviceScan {
  template <typename InputIteratorT, typename OutputIteratorT, typename NumItemsT>
  static cudaError_t ExclusiveSum(void* d_temp_storage, size_t& temp_storage_bytes,
                                  InputIteratorT d_in, OutputIteratorT d_out,
                                  NumItemsT num_items, cudaStream_t stream = 0) {
    (void)stream;
    using T = typename std::iterator_traits<InputIteratorT>::value_type;
    const size_t need = 256;  // CUB asks for a little tile-status storage; so do we
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = need;
      return cudaSuccess;
    }
    if (temp_storage_bytes < need || num_items < 0) return cudaErrorInvalidValue;
    std::memset(d_temp_storage, 0xA5, need);
    T acc = T(0);
    for (NumItemsT i = 0; i < num_items; ++i) {
      const T v = d_in[i];  // read before the write: in place is allowed
      d_out[i] = acc;
      acc = acc + v;
    }
    return cudaSuccess;
  }
};

}  // namespace cub
