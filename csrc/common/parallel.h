// CPU threading: one thread-count setting for the whole library, OpenMP underneath
// (the same libgomp runtime MXNet uses, so OMP_NUM_THREADS is respected by both).
#pragma once

#include <cstdint>

namespace frcnn {

// Threads the CPU kernels may use. Defaults to FRCNN_NUM_THREADS, else OMP_NUM_THREADS,
// else the number of cores.
int get_num_threads();
// n <= 0 restores the default.
void set_num_threads(int n);

// Threads worth using for `work` units of roughly equal cost, given that one thread
// should get at least `min_per_thread` units.
int threads_for(int64_t work, int64_t min_per_thread);

}  // namespace frcnn
