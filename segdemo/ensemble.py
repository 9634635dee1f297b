"""Several trained models as one: their class probabilities averaged.

Members may have different input sizes; each runs at its own, and the probabilities meet at the
largest member's input size before the usual resize back to the photo. Quacks like `Segmenter`
where `evaluate`, `predict` and the dashboard use it.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from segdemo.images import ImageSource
from segdemo.inference import Prediction, Segmenter


class Ensemble:
    """The average of `members`' probabilities (all must predict the same classes)."""

    def __init__(self, members: Sequence[Segmenter]):
        if len(members) < 2:
            raise ValueError("An ensemble needs at least two models.")
        names = [[c.name for c in m.classes] for m in members]
        if any(n != names[0] for n in names):
            raise ValueError("Ensemble members must predict the same classes in the same order; "
                             f"got {', '.join('/'.join(n) for n in names)}.")
        self.members = list(members)
        self.classes = members[0].classes
        self._largest = max(members, key=lambda m: m.input_size[0] * m.input_size[1])
        self.input_size = self._largest.input_size
        self.tta = members[0].tta
        self.arch_id = "ensemble(" + "+".join(m.arch_id for m in members) + ")"
        self.card = {"id": self.arch_id, "title": "Ensemble of " + ", ".join(m.arch_id for m in members),
                     "input_size": list(self.input_size), "members": [m.card for m in members],
                     # splits as the first member was trained with (evaluate reads them)
                     "config": members[0].card.get("config", {}),
                     "dataset": members[0].card.get("dataset", {})}

    def predict(self, image: ImageSource) -> Prediction:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Each member's probabilities at the common size, averaged, then resized back once."""
        import tensorflow as tf

        start = time.perf_counter()
        total = None
        sizes = None
        for member in self.members:
            prepared = [member.prepare(image) for image in images]
            sizes = [size for _, size in prepared]
            probs = member.input_probabilities(np.stack([p for p, _ in prepared]))
            if tuple(probs.shape[1:3]) != tuple(self.input_size):
                probs = tf.image.resize(probs, self.input_size, method="bilinear").numpy()
            total = probs if total is None else total + probs
        average = total / len(self.members)
        results = [Prediction(self._largest.full_labels(p, size), None, p,
                              resolve_confidence=self._largest.confidence)
                   for p, size in zip(average, sizes)]
        for result in results:
            result.seconds = (time.perf_counter() - start) / len(results)
        return results
