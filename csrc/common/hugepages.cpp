#include "common/hugepages.h"

#include <cstdint>

#include "common/parallel.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace frcnn {

namespace {
constexpr uintptr_t kHuge = uintptr_t(1) << 21;
constexpr uintptr_t kPage = 4096;
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23  // Linux 5.14 (older headers); EINVAL on older kernels
#endif
}  // namespace

void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
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

void prepare_output(void* ptr, size_t bytes) {
  advise_huge_pages(ptr, bytes);
#if defined(__linux__)
  if (ptr == nullptr || bytes < 4 * kHuge) return;
  // Whole pages inside the buffer only: the partial ones at its ends may hold other data
  // (populating them would be harmless, but they are few).
  const uintptr_t b = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t lo = (b + kPage - 1) & ~(kPage - 1);
  const uintptr_t hi = (b + bytes) & ~(kPage - 1);
  const int64_t chunk = int64_t(4) * kHuge;  // 8 MiB: whole huge pages, a few per thread
  const int64_t n = static_cast<int64_t>((hi - lo + chunk - 1) / chunk);
  const int nt = threads_for(n, 2);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t i = 0; i < n; ++i) {
    const uintptr_t s = lo + static_cast<uintptr_t>(i * chunk);
    const uintptr_t e = s + chunk < hi ? s + chunk : hi;
    // EINVAL (kernel < 5.14) or EFAULT (an odd mapping): the kernel's own writes fault them
    madvise(reinterpret_cast<void*>(s), e - s, MADV_POPULATE_WRITE);
  }
#endif
}

}  // namespace frcnn
