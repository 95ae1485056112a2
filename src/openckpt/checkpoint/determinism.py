"""Process-level settings a bitwise-exact resume depends on, beyond the state a checkpoint holds.

Intel MKL (torch's CPU math on x86) chooses its vector-math kernels lazily, on the first call in the process. When
that first call is made by two threads at once — an element-wise op large enough for torch to split across its
intra-op threads, such as the first ``tanh`` of a forward pass — one thread can compute its half with another
kernel, which differs in the last bit. Seen on an AVX-512 Xeon in about one process in four: a resumed run then
drifts from the run it resumes. One small call on one thread first settles the choice for the whole process.
"""

from __future__ import annotations

import sys

__all__ = ["settle_math_kernels"]

_settled = False


def settle_math_kernels() -> None:
    """Make MKL's first vector-math and BLAS calls on this thread, alone (once per process; no-op without torch)."""
    global _settled
    torch = sys.modules.get("torch")
    if _settled or torch is None:
        return
    small = torch.ones(16)  # below torch's grain size: one thread, one MKL call each
    torch.exp(small)
    torch.tanh(small)
    small.view(4, 4) @ small.view(4, 4)
    _settled = True
