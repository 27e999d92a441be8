#include "nms/nms_cpu.h"

namespace frcnn {

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
