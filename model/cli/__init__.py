"""The command-line tools: frcnn-train (:mod:`.train`), frcnn-eval (:mod:`.eval`),
frcnn-detect (:mod:`.detect`) and the local data-parallel launcher (:mod:`.launch`).

Library code does not import from here; the tools import the library. Nothing is imported
here, so that each tool sets MXNet's thread count (:mod:`.threads`) before MXNet loads.
"""
