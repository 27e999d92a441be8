// Asks Linux for transparent huge pages on a large buffer that is about to be written.
//
// MXNet's CPU allocator hands out fresh 4 KiB-paged memory for large NDArrays: the first
// write of a 241 MB ROIAlign output then takes ~60k page faults (~90 ms on a 2-core VM, more
// than the kernel itself). With madvise(MADV_HUGEPAGE) on the not yet touched range (what
// NumPy does for its own large arrays) the same memory faults in 2 MiB pages. Only the
// 2 MiB-aligned interior is advised; the call is a no-op hint elsewhere and never fails.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace frcnn {

inline void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (ptr == nullptr || bytes < 4 * kHuge) return;
  const uintptr_t b = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t lo = (b + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (b + bytes) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

}  // namespace frcnn
