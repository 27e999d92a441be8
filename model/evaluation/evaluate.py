"""VOC07 mAP of a network on a dataset: what frcnn-train runs after each epoch and frcnn-eval
runs once."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

if TYPE_CHECKING:
    import mxnet as mx


def evaluate(net: Callable, dataset: Any, transform: Optional[Callable], batch_size: int,
             ctx: Optional[mx.Context] = None,
             progress: bool = False) -> Tuple[List[str], List[float]]:
    """VOC07 mAP of ``net`` on ``dataset``: (names, values) as VOC07MApMetric.get()."""
    import mxnet as mx
    from ..data.transforms import iterate_batches
    from ..training.checkpoint import fault_point
    from .metrics import VOC07MApMetric
    ctx = ctx or mx.cpu()
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=dataset.classes)
    batches = iterate_batches(dataset, transform, batch_size, shuffle=False, seed=0, epoch=0)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, total=math.ceil(len(dataset) / batch_size), desc="eval",
                       leave=False, dynamic_ncols=True)
    for data, labels, _ in batches:
        fault_point("eval")
        ids, scores, bboxes = net(mx.nd.array(data, ctx=ctx))
        metric.update(bboxes, ids, scores, labels[:, :, :4], labels[:, :, 4:5], labels[:, :, 5:6])
    return metric.get()
