// CPU threading: one thread-count setting for the whole library, OpenMP underneath
// (the same libgomp runtime MXNet uses, so OMP_NUM_THREADS is respected by both).
//
// Oversubscription policy (README "Threads"): the setting is a budget for the whole process,
// not per call.
// - Default: FRCNN_NUM_THREADS, else OMP_NUM_THREADS, else the number of cores; when
//   FRCNN_NUM_THREADS is not set and MXNET_CPU_WORKER_NTHREADS = k > 1 (MXNet runs k CPU ops
//   at once, each with its own OpenMP threads) the default is divided by k (at least 1).
// - Calls that run at the same time (MXNet engine workers, Python threads) share the
//   budget: a call gets max(1, budget / calls running now) threads.
// - A call made from inside an OpenMP parallel region runs on its calling thread.
// Results never depend on the thread count (every kernel partitions work so that each output
// is computed by one thread in a fixed order).
#pragma once

#include <cstdint>

namespace frcnn {

// Threads the CPU kernels may use (the budget above).
int get_num_threads();
// n <= 0 restores the default.
void set_num_threads(int n);

// Threads worth using for `work` units of roughly equal cost, given that one thread
// should get at least `min_per_thread` units: min(budget / running calls, work /
// min_per_thread), at least 1; 1 inside an OpenMP parallel region.
int threads_for(int64_t work, int64_t min_per_thread);

// Marks a CPU kernel call as running for its lifetime (FRCNN_DISPATCH_CPU holds one), so
// that concurrent calls share the thread budget.
class ActiveCall {
 public:
  ActiveCall();
  ~ActiveCall();
  ActiveCall(const ActiveCall&) = delete;
  ActiveCall& operator=(const ActiveCall&) = delete;
};

// Calls running now (for tests and diagnostics).
int active_calls();

}  // namespace frcnn
