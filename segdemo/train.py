"""Training: one function that takes a `TrainConfig` and leaves a complete model folder.

The folder gets the best weights by validation mIoU, `history.json` after every epoch, a
resumable checkpoint (weights, optimizer state, epoch) after every epoch, and at the end
`card.json` and `metrics.json` (evaluation on the held-out test split).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import PIL
import tensorflow as tf

from segdemo.errors import SegDemoError
from segdemo.artifacts import (CARD_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE, read_json,
                               write_json)
from segdemo.data import Augment, Dataset, load_dataset, make_tf_dataset
from segdemo.distill import Teacher
from segdemo.evaluate import evaluate
from segdemo.inference import Segmenter
from segdemo.losses import get_loss
from segdemo.metrics import PixelAccuracy, confusion_matrix, mean_iou_metric, scores
from segdemo.models import get_architecture
from segdemo.models.voc_head import (EXAMPLE_HEAD_FILE, HEAD_BATCHNORM, HEAD_CONVS,
                                     load_voc_head)

CHECKPOINT_DIR = "checkpoint"
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_miou")


class TrainError(SegDemoError, RuntimeError):
    """A training request that cannot go ahead; the message says what to change."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; recorded in the card."""

    arch: str
    data: str | None
    out: str
    format: str = "oxford"
    img_size: int | None = None
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "ce"
    class_weights: list[float] | None = None
    encoder_weights: str | None = None
    head_weights: str | None = None
    freeze_head: bool = False  # the pretrained head's convolutions freeze with the encoder
    freeze_encoder_epochs: int = 0
    resume: bool = False
    flip: bool = True
    scale: tuple[float, float] | None = (0.6, 1.0)
    color_jitter: float = 0.1
    zoom_out: float = 0.0
    copy_paste: float = 0.0
    teacher: str | None = None
    distill_alpha: float = 0.5
    freeze_encoder_bn: bool = False
    decoder_bn_momentum: float | None = None
    holdout_minor_breeds: bool = False
    holdout_breeds: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    classes: list[str] | None = None
    options: dict = field(default_factory=dict)
    command: str = ""


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across several GPUs, the default strategy otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def hardware_description() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = tf.config.list_physical_devices("GPU")
    return f"{cores} CPU cores ({platform.machine()})" + (f", {len(gpus)} GPU(s)" if gpus else ", no GPU")


def cosine_lr(base: float, epochs: int):
    """Per-epoch cosine decay to 5% of the base rate: a function of the epoch alone, so a resumed
    run continues exactly where it stopped."""
    def schedule(epoch: int, _lr: float = 0.0) -> float:
        return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1))))
    return schedule


class _Recorder(keras.callbacks.Callback):
    """After each epoch: history.json, the best weights, and the resumable checkpoint."""

    def __init__(self, out: Path, history: list[dict], state: dict, phase: int, twin: keras.Model):
        super().__init__()
        self.out, self.history, self.state, self.phase = out, history, state, phase
        self.twin = twin
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {"epoch": epoch + 1}
        record.update({k: float(logs[k]) for k in HISTORY_KEYS if k in logs})
        record["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record["seconds"] = round(time.perf_counter() - self._start, 2)
        self.history.append(record)
        score = record.get("val_miou", -1.0)
        if not math.isfinite(score):
            score = -1.0
        if score > self.state["best_val_miou"]:
            self.state.update(best_val_miou=score, best_epoch=epoch + 1)
            _save_weights(self.model, self.out / WEIGHTS_FILE, self.twin)
        ckpt = self.out / CHECKPOINT_DIR
        _save_weights(self.model, ckpt / WEIGHTS_FILE, self.twin)
        np.savez(ckpt / "optimizer.npz",
                 *[keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables])
        write_json(self.out / HISTORY_FILE, self.history)
        self.state.update(epoch=epoch + 1, phase=self.phase)
        write_json(ckpt / "state.json", self.state)  # written last: the commit point of the epoch


def _save_weights(model: keras.Model, path: Path, twin: keras.Model) -> None:
    """Save the model's weights alone, atomically.

    Keras writes a compiled model's optimizer state into `.weights.h5` too (twice the model's size
    again for Adam), so the weights go through `twin`, an uncompiled copy of the architecture.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    twin.set_weights(model.get_weights())
    tmp = path.with_name("tmp." + path.name)
    twin.save_weights(tmp)
    os.replace(tmp, path)


def _restore_optimizer(model: keras.Model, path: Path) -> bool:
    """Put back the optimizer state saved by the checkpoint, when it matches the model."""
    if not path.is_file():
        return False
    model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = model.optimizer.variables
    if len(arrays) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
        return False
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    return True


def _compile(model: keras.Model, config: TrainConfig, dataset: Dataset) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(config.lr),
        loss=get_loss(config.loss, dataset.ignore_index, config.class_weights),
        metrics=[PixelAccuracy(dataset.ignore_index),
                 mean_iou_metric(dataset.num_classes, dataset.ignore_index)],
    )


def _prepare_output(config: TrainConfig) -> tuple[Path, dict | None]:
    """The output folder, and the checkpoint state when resuming."""
    out = Path(config.out)
    state_file = out / CHECKPOINT_DIR / "state.json"
    if config.resume and state_file.is_file():
        return out, read_json(state_file)
    if not config.resume and (state_file.is_file() or (out / HISTORY_FILE).is_file()):
        raise TrainError(f"{out} already holds a training run: pass --resume to continue it, "
                         f"or choose another --out.")
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file, not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def train(config: TrainConfig) -> Path:
    """Train, keep the best epoch, evaluate on the test split; returns the model folder."""
    arch = get_architecture(config.arch)
    if config.options.get("voc_guide"):
        raise TrainError("voc_guide is added to a trained model, not trained: train without it, "
                         "then run python -m segdemo guide --model OUT --out GUIDED.")
    out, resumed = _prepare_output(config)
    keras.utils.set_random_seed(config.seed)
    dataset = load_dataset(config.data, config.format, classes=config.classes,
                           val_fraction=config.val_fraction,
                           test_fraction=config.test_fraction, seed=config.seed,
                           holdout_minor_breeds=config.holdout_minor_breeds,
                           holdout_breeds=config.holdout_breeds)
    for split in ("train", "val"):
        if not dataset.splits.get(split):
            raise TrainError(f"The dataset at {dataset.root} has no images in its {split!r} split.")
    input_size = (config.img_size, config.img_size) if config.img_size else arch.input_size
    if config.options.get("voc_prior"):
        _check_voc_prior(config, dataset)

    strategy = distribution_strategy()
    with strategy.scope():
        model = arch.build(dataset.num_classes, input_size,
                           encoder_weights=None if resumed else config.encoder_weights,
                           **config.options)
        if config.head_weights and not resumed:
            load_voc_head(model, config.head_weights)
    twin = arch.build(dataset.num_classes, input_size, **config.options)
    if config.decoder_bn_momentum is not None:
        _set_decoder_bn_momentum(model, config.decoder_bn_momentum)
    state = {"epoch": 0, "phase": 0, "best_val_miou": -1.0, "best_epoch": 0}
    history: list[dict] = []
    if resumed:
        state.update(resumed)
        model.load_weights(out / CHECKPOINT_DIR / WEIGHTS_FILE)
        history = (read_json(out / HISTORY_FILE) if (out / HISTORY_FILE).is_file() else [])
        history = history[: state["epoch"]]
        print(f"Resuming {config.arch} from epoch {state['epoch']} of {config.epochs}.")

    background = _background_index(dataset)
    if config.copy_paste and background == dataset.ignore_index:
        raise TrainError("Copy-paste augmentation needs a class called 'background' to tell the "
                         "pasted object from its surroundings; this dataset has none.")
    augment = Augment(flip=config.flip, scale=config.scale, color_jitter=config.color_jitter,
                      zoom_out=config.zoom_out, pad_label=background,
                      copy_paste=config.copy_paste)
    teacher = (Teacher.load(config.teacher, [c.name for c in dataset.classes], config.distill_alpha)
               if config.teacher else None)
    train_ds = make_tf_dataset(dataset, "train", input_size, arch.preprocessing, config.batch_size,
                               augment=augment, shuffle=True, seed=config.seed,
                               targets=teacher.targets if teacher else None)
    val_ds = make_tf_dataset(dataset, "val", input_size, arch.preprocessing, config.batch_size)

    encoder = _encoder_layer(model)
    freeze = min(config.freeze_encoder_epochs, config.epochs) if encoder is not None else 0
    if config.freeze_encoder_epochs and encoder is None:
        print(f"{config.arch} has no pretrained encoder: --freeze-encoder-epochs is ignored.")
    phases = [(0, freeze, True), (freeze, config.epochs, False)] if freeze else [(0, config.epochs, False)]
    scheduler = keras.callbacks.LearningRateScheduler(cosine_lr(config.lr, config.epochs))
    verbose = 1 if sys.stdout.isatty() else 2
    for phase, (begin, end, frozen) in enumerate(phases):
        if state["epoch"] >= end:
            continue
        if encoder is not None:
            encoder.trainable = not frozen
            if config.freeze_encoder_bn:
                _freeze_batchnorm(encoder)
        if config.head_weights:  # a pretrained head freezes with the encoder (see voc_head)
            for name in HEAD_CONVS:
                model.get_layer(name).trainable = not (frozen and config.freeze_head)
            for name in HEAD_BATCHNORM:
                model.get_layer(name).trainable = False
        with strategy.scope():
            _compile(model, config, dataset)
            if resumed and state["phase"] == phase and state["epoch"] > begin:
                _restore_optimizer(model, out / CHECKPOINT_DIR / "optimizer.npz")
        model.fit(train_ds, validation_data=val_ds, initial_epoch=max(begin, state["epoch"]),
                  epochs=end, shuffle=False,  # the tf.data pipeline shuffles
                  callbacks=[scheduler, _Recorder(out, history, state, phase, twin)],
                  verbose=verbose)

    if not (out / WEIGHTS_FILE).is_file():  # no epoch had a finite val mIoU: keep the last one
        _save_weights(model, out / WEIGHTS_FILE, twin)
    model.load_weights(out / WEIGHTS_FILE)
    recalibration = _recalibrate_if_better(model, dataset, arch.preprocessing, input_size, config, val_ds)
    if recalibration["kept"]:
        _save_weights(model, out / WEIGHTS_FILE, twin)
    card = _model_card(config, arch, model, dataset, input_size, history, state)
    card["batchnorm_recalibration"] = recalibration
    if teacher is not None:
        card["distillation"] = teacher.describe()
    write_json(out / CARD_FILE, card)
    print("Evaluating the best epoch on the test split...")
    metrics = evaluate(Segmenter(model, card), dataset, "test") if dataset.splits.get("test") else None
    if metrics is not None:
        write_json(out / METRICS_FILE, metrics)
        card["test_miou"] = metrics["original_resolution"]["miou"]
        card["test_pixel_accuracy"] = metrics["original_resolution"]["pixel_accuracy"]
        write_json(out / CARD_FILE, card)
    return out


def recalibrate_batchnorm(model: keras.Model, batches: Iterable, skip: Iterable[str] = ()) -> int:
    """Set every BatchNormalization layer's moving statistics (but those named in `skip`) to
    their mean over `batches`.

    During training the moving averages trail the weights (momentum 0.99, and 0.999 in the
    MobileNetV2 encoder, over a few hundred steps on a small dataset), so inference-mode masks come
    out worse than training-mode ones. Re-estimating them at the final weights, as SWA does, closes
    that gap. Returns the number of images seen.
    """
    skip = set(skip)
    every = [layer for layer in _nested_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    norms = [layer for layer in every if layer.name not in skip]
    if not norms:
        return 0
    saved = [(layer.momentum, layer.trainable) for layer in every]
    seen = 0
    try:
        for layer in every:  # a frozen BatchNormalization ignores training=True
            layer.trainable = layer.name not in skip
        for count, batch in enumerate(batches, start=1):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in norms:  # momentum (k-1)/k makes the moving value the running mean
                layer.momentum = (count - 1) / count
            model(images, training=True)
            seen += int(images.shape[0])
    finally:
        for layer, (momentum, trainable) in zip(every, saved):
            layer.momentum, layer.trainable = momentum, trainable
    return seen


def _recalibrate_if_better(model: keras.Model, dataset: Dataset, preprocessing: str,
                           input_size: tuple[int, int], config: TrainConfig, val_ds) -> dict:
    """Recalibrate BatchNorm on the un-augmented training images; keep it only if val mIoU
    does not drop (a well-converged run's moving averages can be the better estimate)."""
    if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in _nested_layers(model)):
        return {"images": 0, "kept": False, "note": "the model has no BatchNormalization layers"}
    before = _val_miou(model, val_ds, dataset)
    weights = model.get_weights()
    batches = make_tf_dataset(dataset, "train", input_size, preprocessing, config.batch_size)
    # A loaded VOC head's BatchNorms only add its folded biases: their "statistics" are not ones.
    images = recalibrate_batchnorm(model, batches, HEAD_BATCHNORM if config.head_weights else ())
    after = _val_miou(model, val_ds, dataset)
    kept = images > 0 and after >= before
    if not kept:
        model.set_weights(weights)
    print(f"BatchNorm recalibration on {images} training images: val mIoU {before:.4f} -> "
          f"{after:.4f}, {'kept' if kept else 'discarded'}.")
    return {"images": images, "val_miou_before": before, "val_miou_after": after, "kept": kept}


def _val_miou(model: keras.Model, val_ds, dataset: Dataset) -> float:
    """Validation mIoU at the input size, inference mode (what the per-epoch val_miou measures)."""
    cm = np.zeros((dataset.num_classes, dataset.num_classes), dtype=np.int64)
    for images, masks in val_ds:
        predicted = keras.ops.convert_to_numpy(model(images, training=False)).argmax(axis=-1)
        cm += confusion_matrix(np.asarray(masks), predicted, dataset.num_classes, dataset.ignore_index)
    return float(scores(cm)["miou"] or 0.0)


def _background_index(dataset: Dataset) -> int:
    """The class a zoom-out canvas is labelled with: "background" if the dataset has one."""
    names = [c.name for c in dataset.classes]
    return names.index("background") if "background" in names else dataset.ignore_index


def _set_decoder_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Faster-moving statistics outside the encoder. With Keras' default 0.99 and a few dozen
    steps an epoch, the decoder's moving averages lag so far behind its weights that the
    per-epoch validation (inference mode) misjudges the epochs: measured on DeepLabV3+ at epoch 5,
    val mIoU 0.23 in inference mode, 0.69 with batch statistics, 0.72 after re-estimation."""
    encoder = _encoder_layer(model)
    inside = {id(layer) for layer in _nested_layers(encoder)} if isinstance(encoder, keras.Model) else set()
    for layer in _nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in inside:
            layer.momentum = momentum


def _check_voc_prior(config: TrainConfig, dataset) -> None:
    """The prior is the VOC classifier's pet vs background: it needs those weights and classes."""
    names = [c.name for c in dataset.classes][:2]
    if not config.head_weights:
        raise TrainError("--option voc_prior=true needs --head-weights (the VOC DeepLab head, "
                         f"such as {EXAMPLE_HEAD_FILE}): without it the prior is random.")
    if names != ["pet", "background"]:
        raise TrainError("--option voc_prior=true needs the classes pet and background first "
                         f"(as in Oxford-IIIT Pet); this dataset starts with {', '.join(names)}.")


def _freeze_batchnorm(model: keras.Model) -> None:
    """Keep BatchNorm statistics as loaded (Keras 3 runs a non-trainable BN in inference mode):
    a pretrained encoder's statistics beat those of 8-image batches at another input size."""
    for layer in _nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _nested_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _nested_layers(layer)


def _encoder_layer(model: keras.Model) -> keras.layers.Layer | None:
    try:
        return model.get_layer("encoder")
    except ValueError:
        return None


def _encoder_weights_note(config: TrainConfig, arch) -> str:
    if arch.encoder is None:
        return "none: the whole network is trained from scratch"
    if config.encoder_weights is None:
        return f"none: the {arch.encoder} encoder is trained from scratch (no ImageNet weights used)"
    if config.encoder_weights == "imagenet":
        return f"ImageNet {arch.encoder} (Keras download)"
    name = Path(config.encoder_weights).name
    source = "PASCAL VOC segmentation" if "voc" in name.lower() else "ImageNet"
    return f"{source}-pretrained {arch.encoder} from {name}"


def _model_card(config: TrainConfig, arch, model: keras.Model, dataset: Dataset,
                input_size: tuple[int, int], history: list[dict], state: dict) -> dict:
    weights = Path(config.out) / WEIGHTS_FILE
    return {
        "id": arch.id,
        "title": arch.title,
        "description": arch.description,
        "classes": [c.to_json() for c in dataset.classes],
        "input_size": list(input_size),
        "preprocessing": arch.preprocessing,
        "options": {**arch.options, **config.options},
        "encoder_weights": _encoder_weights_note(config, arch),
        **({"head_weights": "PASCAL VOC DeepLabV3 head (ASPP 1x1, image pooling, projection) "
                            f"from {Path(config.head_weights).name}"} if config.head_weights else {}),
        "dataset": {
            "name": dataset.name, "format": dataset.format, "root": str(config.data),
            "splits": {k: len(v) for k, v in dataset.splits.items()},
            "ignore_index": dataset.ignore_index,
        },
        "epochs": len(history),
        "best_epoch": state["best_epoch"],
        "best_val_miou": state["best_val_miou"],
        "parameters": int(model.count_params()),
        "file_bytes": weights.stat().st_size,
        "file_mb": round(weights.stat().st_size / 2**20, 2),
        "training_seconds": round(sum(r.get("seconds", 0.0) for r in history), 1),
        "hardware": hardware_description(),
        "versions": {
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
        },
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "config": {k: v for k, v in asdict(config).items() if k not in ("command",)},
    }
