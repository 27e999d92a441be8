#include "common/parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace frcnn {
namespace {

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (end != v && n > 0) ? static_cast<int>(std::min<long>(n, 1024)) : 0;
}

int default_threads() {
  const int explicit_n = env_threads("FRCNN_NUM_THREADS");
  if (explicit_n > 0) return explicit_n;
  int n = env_threads("OMP_NUM_THREADS");
  if (n == 0) n = static_cast<int>(std::thread::hardware_concurrency());
  // MXNet runs up to MXNET_CPU_WORKER_NTHREADS CPU ops at once, each opening its own
  // OpenMP regions: share the cores with the other workers.
  const int workers = env_threads("MXNET_CPU_WORKER_NTHREADS");
  if (workers > 1) n /= workers;
  return std::max(n, 1);
}

std::atomic<int> g_threads{0};
std::atomic<int> g_active{0};

}  // namespace

int get_num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : default_threads()); }

ActiveCall::ActiveCall() { g_active.fetch_add(1, std::memory_order_relaxed); }
ActiveCall::~ActiveCall() { g_active.fetch_sub(1, std::memory_order_relaxed); }

int active_calls() { return g_active.load(std::memory_order_relaxed); }

int threads_for(int64_t work, int64_t min_per_thread) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#endif
  if (min_per_thread < 1) min_per_thread = 1;
  int budget = get_num_threads();
  const int running = g_active.load(std::memory_order_relaxed);
  if (running > 1) budget = std::max(1, budget / running);
  const int64_t by_work = std::max<int64_t>(1, work / min_per_thread);
  return static_cast<int>(std::min<int64_t>(budget, by_work));
}

}  // namespace frcnn
