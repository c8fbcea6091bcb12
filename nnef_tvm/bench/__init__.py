"""nnef-bench: time nnef-tvm against the runtimes users would pick instead.

* :mod:`.runner`  -- the timing loop, statistics, memory probe (what is timed);
* :mod:`.worker`  -- one runtime per process (honest peak memory, crash isolation);
* :mod:`.remote`  -- timing on RPC devices (direct or through a tracker);
* :mod:`.peers`   -- onnxruntime, tract, NNEF-Tools' interpreter (all optional);
* :mod:`.profile` -- per-kernel times mapped to NNEF operations;
* :mod:`.report`  -- text table, JSON, CSV and plot;
* :mod:`.core`    -- :func:`benchmark`, which ties them together.
"""
from .core import ROW_KEYS, SCHEMA, benchmark  # noqa: F401
