"""``pipeline-bench``: the engine's workloads against baselines, run in the same invocation.

Modules: ``plan`` (workload sizes), ``workloads`` (W1-W4, in this process), ``memory`` (W5, in a
child process), ``startup`` (W6), ``baselines`` (plain threads, raw pyzmq, mpipe), ``report``
(table and JSON) and ``app`` (the command line).
"""

import os

# One BLAS thread per worker thread, so that W3's matrix products measure the engine's
# parallelism rather than OpenBLAS's own threads fighting over two cores. It must be set before
# numpy loads, which is why it stands here, and the child processes inherit it.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
