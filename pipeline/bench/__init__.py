"""``pipeline-bench``: the engine's workloads against baselines, run in the same invocation.

Modules: ``plan`` (workload sizes), ``steps`` and ``arrays`` (the workloads' steps), ``workloads``
(W1-W4, in this process), ``memory`` (W5, in a child process), ``startup`` (W6), ``baselines``
(plain threads, raw pyzmq, multiprocessing, mpipe), ``designs`` (each row's name and what it is),
``report`` (table and JSON), ``app`` (the command line) and ``overhead`` (what the monitor's
status stream costs W1). The benchmark sits on top of the framework: nothing else in
``pipeline`` imports it (tests/test_layering.py).
"""

import os

# One BLAS thread per worker thread, so that W3's matrix products measure the engine's
# parallelism rather than OpenBLAS's own threads fighting over two cores. It must be set before
# numpy loads, which is why it stands here, and the child processes inherit it.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
