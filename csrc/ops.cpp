#include "ops.h"

namespace frcnn {

const std::vector<const OpDef*>& all_ops() {
#define FRCNN_OP_ADDRESS(name) &name##_op(),
  static const std::vector<const OpDef*> ops = {FRCNN_OPS(FRCNN_OP_ADDRESS)};
#undef FRCNN_OP_ADDRESS
  return ops;
}

}  // namespace frcnn
