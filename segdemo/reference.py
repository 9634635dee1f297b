"""An off-the-shelf yardstick: Google's PASCAL VOC DeepLabV3 + MobileNetV2 (int8 TFLite), which
has never seen a trimap, read as a pet model ("cat" or "dog" -> pet, anything else ->
background). It has no border class, so its mIoU over our three classes is not comparable; its
pet-vs-background IoU and boundary F-score are.

Runs on LiteRT (`ai-edge-litert`; `tf.lite.Interpreter` is deprecated), at the model's own
513x513 input.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.errors import SegDemoError
from segdemo.classes import PET_CLASSES
from segdemo.images import ImageSource, open_image, resize_nearest
from segdemo.inference import Prediction

VOC_PET_CLASSES = (8, 12)  # cat, dog in PASCAL VOC's 21 classes
REFERENCE_ID = "reference_voc_deeplabv3_mobilenetv2"
REFERENCE_TITLE = "reference: no pet training (PASCAL VOC DeepLabV3, int8 TFLite)"


class ReferenceModelError(SegDemoError, RuntimeError):
    """The reference model cannot be run; the message says why."""


class VocReference:
    """Duck-types the parts of `Segmenter` that `evaluate` uses."""

    def __init__(self, tflite_path: str | Path, threads: int | None = None):
        path = Path(tflite_path)
        if not path.is_file():
            raise ReferenceModelError(f"Reference model not found: {path} (it ships in "
                                 "../shared/pretrained/deeplabv3_mnv2_pascal_quant.tflite).")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ReferenceModelError("The reference model runs on LiteRT: pip install ai-edge-litert "
                                 f"({error}).") from None
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ReferenceModelError(f"{path} is not a readable TFLite model: {error}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        _, height, width, _ = self._input["shape"]
        self.input_size: tuple[int, int] = (int(height), int(width))
        self.classes = list(PET_CLASSES)
        self.arch_id = REFERENCE_ID
        self.card = {"id": REFERENCE_ID, "title": REFERENCE_TITLE, "input_size": list(self.input_size),
                     "source": path.name, "file_mb": round(path.stat().st_size / 2**20, 2)}

    def predict(self, image: ImageSource) -> Prediction:
        """Pet / background mask at the photo's original size (never border)."""
        start = time.perf_counter()
        image = open_image(image)
        height, width = self.input_size
        batch = np.asarray(image.resize((width, height), Image.BILINEAR), np.uint8)[None]
        self._interpreter.set_tensor(self._input["index"], batch.astype(self._input["dtype"]))
        self._interpreter.invoke()
        ids = self._interpreter.get_tensor(self._output["index"]).reshape(height, width)
        small = np.where(np.isin(ids, VOC_PET_CLASSES), 0, 1).astype(np.uint8)
        mask = resize_nearest(small, (image.size[1], image.size[0]))
        one_hot = np.eye(len(self.classes), dtype=np.float32)[small]
        return Prediction(mask, np.ones(mask.shape, np.float32), one_hot,
                          time.perf_counter() - start)
