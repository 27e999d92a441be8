"""Training: one training step (:mod:`.step`), the RPN/RCNN targets (:mod:`.targets`, loops in
Cython) and crash-safe checkpoint files (:mod:`.checkpoint`).

Nothing is imported here: the targets and checkpoints load without MXNet.
"""
