"""The JSON a segmentation result travels in between the Ray Serve app and its clients.

Both ends use this module, so the format is written down once. Arrays travel as
`{"shape", "dtype", "data"}` with `data` the base64 of the zlib-compressed little-endian bytes:
exact (the dashboard's cached results come out bit-identical to the in-process ones, see
`shown_from_json`) and small for label masks (a 1024 x 768 display mask is a few KB).

A result always carries the photo's size, the class names, each class's share of the
full-resolution mask, the mean confidence and the timings; the class probabilities at the model's
input size (the network's own resolution, already downsampled from the photo) and a display-sized
mask and confidence map only when asked for.
"""
from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from segdemo.batching import ShownPrediction, shown_prediction
from segdemo.classes import ClassInfo
from segdemo.errors import SegDemoError

ARRAY_DTYPES = ("uint8", "float16", "float32")
PROBABILITY_DTYPES = ("float16", "float32")


class WireError(SegDemoError, ValueError):
    """A result that does not have the documented shape (an older or a foreign server)."""


def encode_array(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    if array.dtype.name not in ARRAY_DTYPES:
        raise ValueError(f"arrays travel as {', '.join(ARRAY_DTYPES)}, not {array.dtype}.")
    data = zlib.compress(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(), 1)
    return {"shape": list(array.shape), "dtype": array.dtype.name,
            "data": base64.b64encode(data).decode("ascii")}


def decode_array(value: Any) -> np.ndarray:
    try:
        dtype = np.dtype(value["dtype"]).newbyteorder("<")
        if dtype.name not in ARRAY_DTYPES:
            raise ValueError(f"dtype {value['dtype']!r}")
        raw = zlib.decompress(base64.b64decode(value["data"], validate=True))
        return np.frombuffer(raw, dtype).reshape(value["shape"]).astype(dtype.name)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise WireError(f"an array in the result is malformed ({exc}).") from None


def result_json(model: str, prediction: Any, classes: Sequence[ClassInfo], timings: dict,
                probabilities: str | None = None, display_side: int | None = None) -> dict:
    """The JSON answer for one `segdemo.inference.Prediction`. `probabilities` ("float16" or
    "float32") adds the input-size class probabilities, `display_side` the mask and confidence map
    shrunk to that longest side as the dashboard keeps them (`batching.shown_prediction`)."""
    width, height = prediction.size
    shown = shown_prediction(prediction, len(classes), display_side or max(width, height, 1))
    result = {"model": model, "width": width, "height": height,
              "classes": [c.name for c in classes],
              "shares": {c.name: float(s) for c, s in zip(classes, shown.shares)},
              "mean_confidence": shown.mean_confidence, "seconds": shown.seconds,
              "timings": timings}
    if probabilities:
        if probabilities not in PROBABILITY_DTYPES:
            raise ValueError(f"probabilities come as {' or '.join(PROBABILITY_DTYPES)}, "
                             f"not {probabilities!r}.")
        result["probabilities"] = encode_array(shown.input_probabilities.astype(probabilities))
    if display_side:
        result["display"] = {"side": display_side, "mask": encode_array(shown.mask),
                             "confidence": encode_array(shown.confidence)}
    return result


def shown_from_json(result: dict) -> ShownPrediction:
    """The dashboard's `ShownPrediction` from a result asked for with float32 probabilities and a
    display side: the same arrays and numbers `shown_prediction` gives in process."""
    try:
        display, probabilities = result["display"], result["probabilities"]
        shares = np.array([result["shares"][name] for name in result["classes"]], np.float64)
        size = (int(result["width"]), int(result["height"]))
        mean_confidence, seconds = float(result["mean_confidence"]), float(result["seconds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"the result lacks {exc} (ask with probabilities=float32 and "
                        "display_side).") from None
    return ShownPrediction(mask=decode_array(display["mask"]),
                           confidence=decode_array(display["confidence"]), shares=shares,
                           mean_confidence=mean_confidence,
                           input_probabilities=decode_array(probabilities).astype(np.float32),
                           size=size, seconds=seconds)
