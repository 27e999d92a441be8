// The registration table: every op of frcnn_ops, once. The MXNet library (csrc/mxnet) and the
// Python module (csrc/python) register exactly these; adding an op is a line here
// (csrc/README.md).
#pragma once

#include "common/op.h"

// X(name): name##_op() returns the op's OpDef (defined in csrc/<folder>/<folder>.cpp;
// multilevel_proposal in proposal/proposal.cpp).
#define FRCNN_OPS(X)     \
  X(box_decode)          \
  X(clip_boxes)          \
  X(proposal)            \
  X(multilevel_proposal) \
  X(nms)                 \
  X(roi_align)           \
  X(multilevel_roi_align)

namespace frcnn {
#define FRCNN_DECLARE_OP(name) const OpDef& name##_op();
FRCNN_OPS(FRCNN_DECLARE_OP)
#undef FRCNN_DECLARE_OP
}  // namespace frcnn
