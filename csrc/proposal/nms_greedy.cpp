#include "proposal/nms_cpu.h"

namespace frcnn {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FRCNN_NO_CLONES)
#define FRCNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FRCNN_CLONES
#endif

FRCNN_CLONES
int greedy_nms(const BoxList<float>& cand, int n, float thresh, bool center, bool by_class,
               int max_keep, BoxList<float>* kept) {
  return greedy_nms_impl<float>(cand, n, thresh, center, by_class, max_keep, kept);
}

FRCNN_CLONES
int greedy_nms(const BoxList<double>& cand, int n, double thresh, bool center, bool by_class,
               int max_keep, BoxList<double>* kept) {
  return greedy_nms_impl<double>(cand, n, thresh, center, by_class, max_keep, kept);
}

}  // namespace frcnn
