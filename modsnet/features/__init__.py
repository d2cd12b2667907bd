"""Dataset features per modality: the numbers that place an uploaded dataset beside the library's datasets.

One module per modality; the same functions describe the built-in libraries' datasets and a user's upload,
so the two are comparable by construction.
"""

from threadpoolctl import threadpool_limits


def single_threaded_blas() -> None:
    """Run BLAS on one thread in this process, for good.

    Feature extraction does many small matrix products; with OpenBLAS's own threads competing with the
    service's request threads (and anything else on the node), a 10k-row table took 3-5 times longer
    (measured: 336 ms against 122 ms). Parallelism comes from serving requests concurrently instead.
    """
    threadpool_limits(limits=1, user_api="blas")
