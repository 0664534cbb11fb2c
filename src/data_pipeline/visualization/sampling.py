"""Downsampling for charts: Largest-Triangle-Three-Buckets (LTTB) for lines.

LTTB (Steinarsson, 2013) keeps the first and last points and, from each of ``n - 2`` equal buckets,
the point forming the largest triangle with the point kept before it and the mean of the next
bucket: peaks and troughs survive, flat stretches thin out. The loop is over buckets (at most
``n``), the work inside each bucket is vectorised with NumPy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["lttb_indices"]


def lttb_indices(x: Any, y: Any, n_out: int) -> Any:
    """Indices (sorted, NumPy int64) of the ``n_out`` points LTTB keeps from ``x``/``y``.

    ``x`` must be sorted ascending; both are 1-D numeric arrays of the same length without nulls.

    >>> import numpy as np
    >>> lttb_indices(np.arange(10.0), np.array([0, 0, 9, 0, 0, 0, -9, 0, 0, 0.0]), 4).tolist()
    [0, 2, 6, 9]
    """
    import numpy as np

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n = xs.shape[0]
    if n_out >= n or n_out < 3:
        return np.arange(n, dtype=np.int64)
    # bucket boundaries over the points between the first and the last
    edges = np.floor(np.linspace(1, n - 1, n_out - 1)).astype(np.int64)
    csx = np.concatenate(([0.0], np.cumsum(xs)))
    csy = np.concatenate(([0.0], np.cumsum(ys)))
    out = np.empty(n_out, dtype=np.int64)
    out[0] = 0
    out[-1] = n - 1
    a = 0
    for i in range(n_out - 2):
        start, end = edges[i], max(edges[i + 1], edges[i] + 1)
        # mean of the next bucket (the last point for the final bucket)
        if i + 2 < n_out - 1:
            ns, ne = edges[i + 1], max(edges[i + 2], edges[i + 1] + 1)
            cx = (csx[ne] - csx[ns]) / (ne - ns)
            cy = (csy[ne] - csy[ns]) / (ne - ns)
        else:
            cx, cy = xs[n - 1], ys[n - 1]
        ax, ay = xs[a], ys[a]
        bx = xs[start:end]
        by = ys[start:end]
        area = np.abs((ax - cx) * (by - ay) - (ax - bx) * (cy - ay))
        a = int(start + int(np.argmax(area)))
        out[i + 1] = a
    return out
