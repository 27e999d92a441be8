// Fresh output memory: how the CPU kernels make the first write of a large buffer cheap.
//
// MXNet's CPU allocator hands out fresh, untouched 4 KiB-paged memory for every large
// NDArray: the first write of a 241 MB ROIAlign output is then ~60k page faults, each a trap
// into the kernel that allocates and zeroes one page (measured ~1.2 us each on a 2-core VM:
// more than the ROIAlign kernel itself). Two things cut that cost:
// - advise_huge_pages: madvise(MADV_HUGEPAGE) on the untouched 2 MiB-aligned interior (what
//   NumPy does for its own large arrays), so the memory faults in 2 MiB pages: ~120 faults.
// - prepare_output: the above, then MADV_POPULATE_WRITE (Linux >= 5.14) over the buffer in
//   chunks on the library's threads: the pages are allocated and zeroed in a few system calls
//   spread over the cores instead of one trap per page inside the kernel's loops. That is
//   what keeps the cost when huge pages are not available (fragmented memory, THP disabled:
//   frcnn-bench --no-thp) and it parallelises the zeroing of huge pages as well. On memory
//   that is already mapped (a reused output) it only walks the page tables.
// Both are hints: they never fail, and do nothing off Linux or below their size threshold.
#pragma once

#include <cstddef>

namespace frcnn {

void advise_huge_pages(void* ptr, size_t bytes);

// For a buffer the caller is about to overwrite completely (an op's output).
void prepare_output(void* ptr, size_t bytes);

}  // namespace frcnn
