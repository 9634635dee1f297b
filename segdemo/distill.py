"""Distillation: a trained model's soft probabilities as extra training targets.

The from-scratch models (VGG16 and Xception have no pretrained weights here) learn only from a
few hundred trimaps and fall apart on breeds they never saw. A pretrained teacher has seen far
more of the visual world; its probabilities on every augmented training photo tell the student
what a pet looks like beyond the labelled pixels, and label the pixels the trimap leaves out
(zoom-out canvases, ignored pixels) too (Hinton et al., 2015: "Distilling the knowledge in a
neural network").

The teacher runs inside the tf.data pipeline on the photos exactly as augmented for the
student, at its own input size and preprocessing; only its probabilities cross over.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from segdemo.artifacts import load_model
from segdemo.errors import SegDemoError
from segdemo.preprocessing import get_preprocessor


class DistillError(SegDemoError, ValueError):
    """A teacher that cannot teach this student (other classes, a bad weight)."""


class Teacher:
    """Mixes a trained model's probabilities into the targets: `alpha * teacher + (1 - alpha) *
    one-hot label` where the label counts, the teacher alone where it does not."""

    def __init__(self, model, card: dict, alpha: float = 0.5):
        if not 0 < alpha <= 1:
            raise DistillError(f"The distillation weight must be in (0, 1], got {alpha}.")
        self.model, self.card, self.alpha = model, card, float(alpha)
        self.input_size = tuple(card["input_size"])
        self.class_names = [c["name"] for c in card["classes"]]
        self._normalise = get_preprocessor(card["preprocessing"])

    @classmethod
    def load(cls, model_dir: str | Path, class_names: list[str], alpha: float = 0.5) -> "Teacher":
        """The model in `model_dir`, checked to predict the student's classes in its order."""
        model, card = load_model(model_dir)
        teacher = cls(model, card, alpha)
        if teacher.class_names != list(class_names):
            raise DistillError(
                f"The teacher {Path(model_dir).name} predicts {', '.join(teacher.class_names)}; "
                f"the student's dataset has {', '.join(class_names)}. They must match in order.")
        return teacher

    def describe(self) -> dict:
        """What the card of a distilled model records."""
        return {"teacher": self.card["id"], "teacher_input_size": list(self.input_size),
                "alpha": self.alpha}

    def targets(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """Soft targets (N, H, W, C) for images in [0, 255] (N, H, W, 3) and int masks (N, H, W)
        where values outside the classes mean "ignored"."""
        size = images.shape[1:3]
        seen = tf.image.resize(images, self.input_size, method="bilinear")
        probs = tf.nn.softmax(tf.cast(self.model(self._normalise(seen), training=False),
                                      tf.float32), axis=-1)
        probs = tf.image.resize(probs, size, method="bilinear")
        num_classes = len(self.class_names)
        labelled = (masks >= 0) & (masks < num_classes)
        onehot = tf.one_hot(tf.where(labelled, masks, 0), num_classes)
        mixed = self.alpha * probs + (1.0 - self.alpha) * onehot
        return tf.where(labelled[..., None], mixed, probs)
