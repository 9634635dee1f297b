"""From the network's small probability maps to a label mask at the photo's size, cheaply.

The exact answer is "resize the class probabilities bilinearly (TF's half-pixel centres), take the
argmax": `exact_labels`, today's reference. At 12 megapixels that resizes three float32 maps of
12 M pixels each (~100-300 ms on 2 cores) only to throw them away after the argmax.

`bilinear_labels` gives the same labels while interpolating almost nothing, from one fact: the set
of probability vectors whose argmax is class k is convex, so any blend of vectors that all have
argmax k has argmax k as well. Bilinear interpolation is separable and blends two neighbours per
axis, so:

1. along x, at the source height: a column whose two source neighbours agree takes their label;
   only columns between disagreeing neighbours are interpolated (and argmax'd);
2. along y, to the full height: every output row is a copy of its upper source row's labels,
   except where the two source rows' labels differ, where the pixel is interpolated exactly.

The work is a row copy of the mask (the output itself) plus the pixels in a band along the class
edges (a few % of a 12 MP photo). The arithmetic follows TF's (x first, then y, in float32), so
labels match `exact_labels` except at float-rounding ties (0 changed pixels on the shipped models'
photos; `benchmark` reports the share). Measured at 12 MP on 2 cores (README speed section,
`edge_band` vs `tf_float32`): 9.7 ms against 62.8 ms for the exact path, in one quiet run.
Other options: resizing uint8-quantised probabilities (slower) and argmax-then-nearest (changes
labels along every edge) are measured among the benchmark's resize candidates; an intermediate
scale was not measured: it would change the labels in the edge band, which this keeps exact.
"""
from __future__ import annotations

import numpy as np


def _axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, weight of upper) source indices per output index, as TF's bilinear resize
    computes them with half-pixel centres (float32 positions, clamped at the borders)."""
    scale = np.float32(in_size / out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(position), in_size - 1).astype(np.intp)
    return lower, upper, (position - floor).astype(np.float32)


def bilinear_labels(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 argmax of `probs` (h, w, C) bilinearly resized to size=(H, W), computed only
    along class edges (see the module docstring)."""
    probs = np.asarray(probs, np.float32)
    height, width = int(size[0]), int(size[1])
    x_low, x_high, x_weight = _axis(probs.shape[1], width)
    y_low, y_high, y_weight = _axis(probs.shape[0], height)
    source = probs.argmax(axis=-1).astype(np.uint8)

    def along_x(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Probabilities interpolated along x at source rows `rows`, output columns `columns`."""
        left = probs[rows, x_low[columns]]
        return left + (probs[rows, x_high[columns]] - left) * x_weight[columns, None]

    labels_x = source[:, x_low]  # (h, W): right wherever both neighbours agree
    rows, columns = np.nonzero(labels_x != source[:, x_high])
    labels_x[rows, columns] = along_x(rows, columns).argmax(axis=-1)

    mask = labels_x[y_low]  # (H, W): right wherever the two source rows agree
    blended = np.nonzero(y_high == y_low + 1)[0]  # output rows that mix two source rows
    edge_rows, edge_columns = np.nonzero(labels_x[:-1] != labels_x[1:])
    if edge_rows.size and blended.size:
        lows = y_low[blended]  # non-decreasing: the rows mixing source rows r and r + 1 are a run
        first = np.searchsorted(lows, edge_rows, side="left")
        count = np.searchsorted(lows, edge_rows, side="right") - first
        edge = np.repeat(np.arange(edge_rows.size), count)
        offset = np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count)
        out_rows = blended[first[edge] + offset]
        top = along_x(edge_rows, edge_columns)
        bottom = along_x(edge_rows + 1, edge_columns)
        values = top[edge] + (bottom - top)[edge] * y_weight[out_rows, None]
        mask[out_rows, edge_columns[edge]] = values.argmax(axis=-1)
    return mask


def exact_labels(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference: TF's bilinear resize of every class map to size=(H, W), then argmax."""
    import tensorflow as tf

    resized = tf.image.resize(np.asarray(probs, np.float32), size, method="bilinear")
    return tf.cast(tf.argmax(resized, axis=-1, output_type=tf.int32), tf.uint8).numpy()
