"""`python -m segdemo train|evaluate|predict|serve|loadtest|...`: the command line over the core.

Heavy imports (TensorFlow) happen inside the commands so that `--help` answers at once.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHARED_PHOTOS = WEIGHTS_DIR.parent.parent / "shared" / "data" / "oxford-pets" / "images"

FORMATS = ("oxford", "voc", "folders", "tfds")


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        pair = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.6,1.0, got {text!r}") from None
    if not 0 < pair[0] <= pair[1] <= 1:
        raise argparse.ArgumentTypeError("scale bounds must satisfy 0 < low <= high <= 1")
    return pair


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segdemo",
                                     description="Train, evaluate and apply segmentation models.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an architecture on a dataset folder")
    t.add_argument("--arch", required=True, help="architecture id (see `architectures`)")
    t.add_argument("--data", help="dataset folder (not needed for --format tfds)")
    t.add_argument("--format", choices=FORMATS, default="oxford")
    t.add_argument("--out", required=True, help="output folder for weights, history, card, metrics")
    t.add_argument("--img-size", type=int, help="square input size (default: the architecture's)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--loss", choices=("ce", "dice", "dice_ce"), default="ce")
    t.add_argument("--class-weights", type=_floats, help="one weight per class, e.g. 1,1,2")
    t.add_argument("--encoder-weights", default="none",
                   help="imagenet (download), none, or a path to a .weights.h5 file")
    t.add_argument("--head-weights", metavar="NPZ",
                   help="start DeepLabV3+ (--option head=mobile) from the PASCAL VOC DeepLab's "
                        "head, e.g. ../shared/pretrained/deeplabv3_mnv2_pascal_head.npz")
    t.add_argument("--freeze-head", action="store_true",
                   help="freeze the --head-weights convolutions with the encoder")
    t.add_argument("--freeze-encoder-epochs", type=int, default=0,
                   help="train the decoder alone for this many epochs first")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    t.add_argument("--scale", type=_pair, default=(0.6, 1.0),
                   help="random crop keeping this fraction of each side, e.g. 0.6,1.0")
    t.add_argument("--no-scale", action="store_true", help="disable random scale/crop")
    t.add_argument("--color-jitter", type=float, default=0.1, help="0 disables colour jitter")
    t.add_argument("--zoom-out", type=float, default=0.0, metavar="P",
                   help="probability of shrinking a training photo onto a plain canvas")
    t.add_argument("--copy-paste", type=float, default=0.0, metavar="P",
                   help="probability of pasting another training photo's pet (cut out by its "
                        "mask, random scale and place) onto each photo")
    t.add_argument("--teacher", metavar="DIR",
                   help="a trained model folder whose probabilities on the augmented photos are "
                        "extra targets (distillation)")
    t.add_argument("--distill-alpha", type=float, default=0.5, metavar="A",
                   help="weight of the teacher's probabilities against the labels (0-1]")
    t.add_argument("--freeze-encoder-bn", action="store_true",
                   help="keep the pretrained encoder's BatchNorm statistics (inference mode)")
    t.add_argument("--decoder-bn-momentum", type=float, metavar="M",
                   help="BatchNorm momentum outside the encoder (Keras default 0.99; 0.9 tracks "
                        "the weights within an epoch on small datasets)")
    t.add_argument("--holdout-minor-breeds", action="store_true",
                   help="Oxford-IIIT Pet: train without the minor breeds (the 'probe' split)")
    t.add_argument("--holdout-breed", action="append", default=[], metavar="BREED",
                   help="Oxford-IIIT Pet: train without every image of this breed (repeatable; "
                        "as in the file names, e.g. Bengal); they form the 'unseen' split")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training split held out to pick the best epoch")
    t.add_argument("--test-fraction", type=float, default=0.2,
                   help="share held out for testing when the dataset brings no split files")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--classes", help="comma-separated class names (folders/voc formats)")
    t.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. width=0.5 or output_stride=8")

    e = sub.add_parser("evaluate", help="score a trained model on a dataset's held-out split")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", nargs="+", metavar="DIR",
                       help="trained model folder; several make an ensemble (averaged probabilities)")
    which.add_argument("--reference", metavar="TFLITE",
                       help="score the off-the-shelf PASCAL VOC DeepLabV3 .tflite instead "
                            "(cat or dog read as pet; no pet training)")
    e.add_argument("--data", help="dataset folder")
    e.add_argument("--format", choices=FORMATS, help="default: the format the model was trained on")
    e.add_argument("--split", default="test",
                   help="test, val, train, or (Oxford) probe or unseen (a --holdout-breed run)")
    e.add_argument("--tta", choices=("none", "flip"), default="none",
                   help="flip: average with the mirror image (twice the network time)")
    e.add_argument("--json", help="write the metrics here (default: <model>/evaluation.json; "
                                  "with --reference: weights/reference_voc.json)")

    p = sub.add_parser("predict", help="write mask and overlay PNGs for images, overlay videos "
                                       "for clips")
    p.add_argument("--model", required=True, help="trained model folder")
    p.add_argument("images", nargs="+", metavar="FILE",
                   help="image files, folders (their images and clips), glob patterns (quoted; "
                        "** for any depth) and video clips (mp4, webm, mov, avi, mkv, animated "
                        "gif); per photo: mask, overlay, cut-out; plus summary.csv")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opacity", type=float, default=0.5, help="mask opacity in the overlay")
    p.add_argument("--tta", choices=("none", "flip"), default="none",
                   help="flip: average with the mirror image (twice the network time)")
    p.add_argument("--fps", action="store_true",
                   help="clips: show progress and the frames per second achieved")
    p.add_argument("--smooth", type=float, default=0.0, metavar="S",
                   help="clips: temporal smoothing, 0 (off) to <1; each frame's class "
                        "probabilities are averaged with the past at weight S (less flicker, "
                        "masks trail motion)")
    p.add_argument("--frames", type=int, metavar="N", help="clips: only the first N frames")
    p.add_argument("--masks", action="store_true",
                   help="clips: also write one mask PNG per frame into <out>/<name>_masks/")
    p.add_argument("--batch-size", type=int, default=8,
                   help="clips: frames per network call; --engine ray: photos per actor call")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: photos through Ray Data, a pool of model actors (clips stay local)")
    p.add_argument("--actors", type=int, metavar="N",
                   help="--engine ray: model actors (default: one per core)")
    p.add_argument("--address", help="--engine ray: the Ray cluster to join (default: a local one)")

    v = sub.add_parser("serve", help="serve the models over HTTP with Ray Serve (batching, "
                                     "replicas, autoscaling)")
    v.add_argument("--models", nargs="+", metavar="ID",
                   help="model ids (default: every usable folder under --weights)")
    v.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder of model folders")
    v.add_argument("--replicas", type=int, default=1, help="replicas per model")
    v.add_argument("--autoscale", type=_range, metavar="MIN,MAX",
                   help="autoscale each model between MIN and MAX replicas instead")
    v.add_argument("--max-batch", type=int, default=8, help="photos per network call at most")
    v.add_argument("--batch-wait-ms", type=float, default=10.0,
                   help="how long a batch waits for more photos")
    v.add_argument("--replica-cpus", type=float,
                   help="CPUs per replica (default: this machine's cores shared by all replicas)")
    v.add_argument("--max-body-mb", type=float, default=32, help="largest image accepted")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0 exposes the server to the network)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--address", help="the Ray cluster to join (default: start a local one)")

    lt = sub.add_parser("loadtest", help="concurrent HTTP clients against the Ray Serve app: "
                                         "photos/s, latency, errors, batching gain")
    lt.add_argument("--model", default="unet_mobilenetv2", help="model id under --weights")
    lt.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder of model folders")
    lt.add_argument("--photos", default=str(SHARED_PHOTOS),
                    help="folder of photos to send (default: the Oxford-IIIT Pet images)")
    lt.add_argument("--count", type=int, default=64, help="photos read from --photos")
    lt.add_argument("--clients", type=int, nargs="+", default=[8, 32, 64])
    lt.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    lt.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    lt.add_argument("--batch-wait-ms", type=float, default=10.0)
    lt.add_argument("--requests", type=int, default=192, help="photos sent per level")
    lt.add_argument("--url", help="measure this running endpoint as deployed instead")
    lt.add_argument("--in-process", action="store_true",
                    help="measure the dashboard's own in-process queue instead (the baseline)")
    lt.add_argument("--port", type=int, default=8000)
    lt.add_argument("--json", help="report (default: <weights>/serve_loadtest.json)")
    lt.add_argument("--append", action="store_true",
                    help="add these settings to the report's (same model and photos)")

    sub.add_parser("architectures", help="list the registered architectures")

    r = sub.add_parser("results", help="markdown table of the trained models' test metrics")
    r.add_argument("--weights", default=str(WEIGHTS_DIR),
                   help="folder of model folders (default: the shipped weights/)")
    shown = r.add_mutually_exclusive_group()
    shown.add_argument("--speed", action="store_true",
                       help="the speed tables from the benchmark JSON instead")
    shown.add_argument("--video", action="store_true",
                       help="the video path's frames/s and flicker from the video benchmark JSON")
    shown.add_argument("--probe", action="store_true",
                       help="test split beside the probe split (minor breeds) instead")
    shown.add_argument("--robustness", action="store_true",
                       help="the mIoU under photo shifts from the robustness JSON instead")
    shown.add_argument("--recipes", action="store_true",
                       help="how each model was trained, from its card, instead")
    shown.add_argument("--candidates", action="store_true",
                       help="candidate training runs beside the shipped models, from "
                            "<weights>/candidates.json, instead")
    shown.add_argument("--unseen", action="store_true",
                       help="the leave-a-breed-out runs on the breed they never saw, from "
                            "<weights>/candidates.json, instead")
    shown.add_argument("--serve", action="store_true",
                       help="the Ray Serve load test from the serve load JSON instead")
    shown.add_argument("--load", action="store_true",
                       help="the dashboard under load (scripts/loadtest.py) from its JSON instead")
    r.add_argument("--json", help="benchmark JSON for --speed (default: <weights>/benchmark.json), "
                                  "robustness JSON for --robustness (default: "
                                  "<weights>/robustness.json), video or load test JSON for "
                                  "--video / --load")

    b = sub.add_parser("benchmark", help="time the models: latency, throughput, memory")
    b.add_argument("--models", nargs="+", metavar="ID",
                   help="model ids (default: every usable folder under --weights)")
    b.add_argument("--weights", help="folder of model folders (default: <repo>/weights)")
    b.add_argument("--untrained", action="store_true",
                   help="time freshly built registry models (random weights) instead of folders")
    b.add_argument("--json", help="write the figures here (default: <weights>/benchmark.json; "
                                  "none with --untrained)")
    b.add_argument("--runs", type=int, default=30, help="timed single-image runs after warm-up")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    b.add_argument("--train-steps", type=int, default=10, help="timed training steps of batch 8 (0 skips training)")
    b.add_argument("--no-candidates", action="store_true",
                   help="skip timing the alternatives the fast path was chosen from")
    b.add_argument("--video", action="store_true",
                   help="time the video path instead (frames/s, flicker with and without "
                        "smoothing) into <weights>/video_benchmark.json")
    b.add_argument("--runtimes", nargs="+", metavar="NAME",
                   help="runtime variants to time (default: all that run here: tf onnx litert "
                        "litert-float16 onnx-int8 litert-int8)")
    b.add_argument("--fidelity", action="store_true",
                   help="instead of timing: score each runtime variant against the Keras model "
                        "on the test split into weights/<id>/runtime.json (run before timing)")
    b.add_argument("--data", help="--fidelity: dataset folder (default: the card's)")
    b.add_argument("--limit", type=int, help="--fidelity: only the test split's first N photos")

    x = sub.add_parser("export", help="convert a model folder to SavedModel, TFLite or ONNX, "
                                      "checked against the Keras model")
    x.add_argument("--model", required=True, help="trained model folder")
    x.add_argument("--format", required=True, choices=("saved_model", "tflite", "onnx"),
                   help="saved_model: TF Serving / Triton; tflite: LiteRT (phones, edge); "
                        "onnx: ONNX Runtime and other engines")
    x.add_argument("--quantize", choices=("float16", "int8"),
                   help="tflite: float16 or int8; onnx: int8 (static, calibrated on --data's "
                        "training photos)")
    x.add_argument("--out", help="output folder (default: exports/<id>/<format>[-<quantize>])")
    x.add_argument("--data", help="dataset folder: int8 calibration and the test split the "
                                  "export is checked on (default: the card's, when present)")
    x.add_argument("--limit", type=int, help="check on the test split's first N photos only")

    guide_encoder, guide_head, guide_weight = _guide_defaults()
    g = sub.add_parser("guide", help="a trained model plus the frozen zero-shot PASCAL VOC DeepLab, "
                                     "which splits pet from background (better on unseen breeds)")
    g.add_argument("--model", required=True, help="trained model folder (classes pet, background, ...)")
    g.add_argument("--out", required=True, help="folder for the guided model")
    g.add_argument("--encoder-weights", default=guide_encoder,
                   help="the VOC MobileNetV2 encoder .weights.h5 (default: %(default)s)")
    g.add_argument("--head-weights", default=guide_head,
                   help="the VOC DeepLab head .npz (default: %(default)s)")
    g.add_argument("--weight", type=float, default=guide_weight,
                   help="how far towards the VOC model the pet/background split goes, in (0, 1] "
                        "(default: %(default)s)")

    c = sub.add_parser("calibrate", help="choose one class's log-probability offset on the "
                                         "validation split and keep it in the model's card")
    c.add_argument("--model", required=True, help="trained model folder")
    c.add_argument("--data", help="dataset folder (the one the model was trained on)")
    c.add_argument("--format", choices=FORMATS, help="default: the format the model was trained on")
    c.add_argument("--class", dest="class_name", default="border",
                   help="the class whose offset is chosen (default: %(default)s)")
    c.add_argument("--grid", type=float, nargs="+", metavar="OFFSET",
                   help="offsets to try (default: +0.5 down to -2)")
    c.add_argument("--dry-run", action="store_true", help="print the scores, change nothing")

    o = sub.add_parser("robustness",
                       help="score the models on the test split under photo shifts users bring")
    o.add_argument("--weights", help="folder of model folders (default: <repo>/weights)")
    o.add_argument("--models", nargs="+", metavar="ID",
                   help="model ids (default: every usable folder under --weights)")
    o.add_argument("--data", help="dataset folder")
    o.add_argument("--format", choices=FORMATS,
                   help="default: the format each model was trained on")
    o.add_argument("--split", default="test")
    o.add_argument("--perturbations", nargs="+", metavar="NAME",
                   help="default: all (the README lists them)")
    o.add_argument("--limit", type=int, help="score only the split's first N images")
    o.add_argument("--json", help="write the scores here (default: <weights>/robustness.json)")
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from segdemo.train import TrainConfig, train

    weights = None if args.encoder_weights.lower() == "none" else args.encoder_weights
    config = TrainConfig(
        arch=args.arch, data=args.data, out=args.out, format=args.format, img_size=args.img_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss,
        class_weights=args.class_weights, encoder_weights=weights, head_weights=args.head_weights,
        freeze_head=args.freeze_head,
        freeze_encoder_epochs=args.freeze_encoder_epochs, resume=args.resume,
        flip=not args.no_flip, scale=None if args.no_scale else args.scale,
        color_jitter=args.color_jitter, zoom_out=args.zoom_out, copy_paste=args.copy_paste,
        teacher=args.teacher, distill_alpha=args.distill_alpha,
        freeze_encoder_bn=args.freeze_encoder_bn, decoder_bn_momentum=args.decoder_bn_momentum,
        holdout_minor_breeds=args.holdout_minor_breeds, holdout_breeds=args.holdout_breed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, seed=args.seed,
        classes=args.classes.split(",") if args.classes else None, options=dict(args.option),
        command="python -m segdemo " + shlex.join(argv),
    )
    out = train(config)
    print(f"Model written to {out}")
    return 0


def _guide_defaults() -> tuple[str, str, float]:
    """The guide command's defaults, without importing Keras for `--help`."""
    from segdemo.guide import DEFAULT_WEIGHT, EXAMPLE_ENCODER_FILE
    from segdemo.models.voc_head import EXAMPLE_HEAD_FILE

    return EXAMPLE_ENCODER_FILE, EXAMPLE_HEAD_FILE, DEFAULT_WEIGHT


def _guide(args: argparse.Namespace) -> int:
    from segdemo.guide import graft_voc_guide

    out = graft_voc_guide(args.model, args.out, args.encoder_weights, args.head_weights,
                          args.weight)
    print(f"Guided model written to {out}; score it with: python -m segdemo evaluate --model {out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from segdemo.artifacts import CARD_FILE, load_model, write_json
    from segdemo.calibrate import DEFAULT_GRID, calibrate, format_grid, write_calibration
    from segdemo.evaluate import dataset_for_card
    from segdemo.inference import Segmenter

    model, card = load_model(args.model)
    dataset = dataset_for_card(card, args.data, args.format)
    segmenter = Segmenter(model, {**card, "class_bias": None}, runtime="auto",
                          model_dir=args.model)
    record = calibrate(segmenter, dataset, args.class_name, grid=args.grid or DEFAULT_GRID)
    print(format_grid(record))
    if args.dry_run:
        return 0
    write_json(Path(args.model) / CARD_FILE, write_calibration(card, record))
    print(f"{args.class_name} offset {record['bias']:+.2f} written to {args.model}/{CARD_FILE}; "
          f"re-run evaluate for its scores.")
    return 0


def _segmenter(folders: list[str], tta: str):
    """One model, or the ensemble of several."""
    from segdemo.inference import Segmenter

    if len(folders) == 1:
        return Segmenter.load(folders[0], tta=tta)
    from segdemo.ensemble import Ensemble

    return Ensemble([Segmenter.load(folder, tta=tta) for folder in folders])


def _evaluate(args: argparse.Namespace) -> int:
    from segdemo.artifacts import write_json
    from segdemo.evaluate import dataset_for_card, evaluate, format_table

    if args.reference:
        from segdemo.artifacts import REFERENCE_FILE
        from segdemo.reference import VocReference

        segmenter = VocReference(args.reference)
        default_target = WEIGHTS_DIR / REFERENCE_FILE
    else:
        segmenter = _segmenter(args.model, args.tta)
        default_target = Path(args.model[0]) / "evaluation.json"
    dataset = dataset_for_card(segmenter.card, args.data, args.format)
    metrics = evaluate(segmenter, dataset, args.split)
    if args.reference:
        metrics["card"] = segmenter.card
    print(format_table(metrics))
    target = Path(args.json) if args.json else default_target
    write_json(target, metrics)
    print(f"Metrics written to {target}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from segdemo.batch_export import BatchExport, ProgressBar, Timing, expand_inputs, folder_writer
    from segdemo.images import ImageError, is_image_file, open_image
    from segdemo.inference import Segmenter
    from segdemo.video import VideoError, is_video

    problem = ("--smooth must lie in [0, 1)" if not 0.0 <= args.smooth < 1.0 else
               "--batch-size must be at least 1" if args.batch_size < 1 else
               "--frames must be at least 1" if args.frames is not None and args.frames < 1 else None)
    if problem:
        print(f"error: {problem}.", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths, problems = expand_inputs(args.images, accept=lambda p: is_image_file(p) or is_video(p))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    failures = len(problems)
    if args.engine == "ray":
        if any(is_video(p) for p in paths):
            print("error: --engine ray segments photos; give clips to the local engine.",
                  file=sys.stderr)
            return 2
        return 1 if _predict_ray(args, paths) + failures else 0
    segmenter = Segmenter.load(args.model, tta=args.tta)
    export = BatchExport(folder_writer(out), args.opacity)
    bar = ProgressBar(len(paths))
    for path in paths:
        bar.step(Path(path).name)
        if is_video(path):
            try:
                _predict_video(segmenter, Path(path), out, args)
            except VideoError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                failures += 1
            continue
        try:
            image = open_image(path)
        except ImageError as exc:
            bar.note(f"skipped: {exc}", sys.stderr)
            failures += 1
            continue
        prediction = segmenter.predict(image)
        export.add(path, segmenter.arch_id, image, prediction.mask,
                   prediction.input_probabilities, segmenter.classes, Timing(prediction.seconds),
                   tta=args.tta)
        bar.note(f"{path}: {image.size[0]}x{image.size[1]}, {prediction.seconds * 1000:.0f} ms")
    bar.close()
    if export.rows:
        export.close()
    return 1 if failures else 0


def _predict_video(segmenter, path: Path, out: Path, args: argparse.Namespace) -> None:
    """One clip: its overlay video (and per-frame masks with --masks) into `out`."""
    from segdemo.video import segment_video

    def progress(done: int, total: int | None) -> None:
        print(f"\r{path.name}: frame {done}" + (f" of {total}" if total else ""), end="",
              file=sys.stderr, flush=True)

    segmenter.warm_up()  # tracing is not part of the rate
    result = segment_video(segmenter, path, out / f"{path.stem}_overlay", name=path.name,
                           opacity=args.opacity, smooth=args.smooth, batch_size=args.batch_size,
                           max_frames=args.frames,
                           masks_dir=out / f"{path.stem}_masks" if args.masks else None,
                           progress=progress if args.fps else None)
    if args.fps:
        print(file=sys.stderr)
    line = (f"{path}: {result.frames} frames, {result.width}x{result.height} at "
            f"{float(result.fps):.3g} frames/s -> {result.path}")
    if args.fps:
        line += (f"; {result.achieved_fps:.1f} frames/s achieved ({result.network_fps:.1f} in the "
                 f"network, batches of {result.batch_size})")
    print(line + (f"; flicker {result.flicker:.2%}" if result.frames > 1 else ""))
    if result.note:
        print(f"warning: {result.note}", file=sys.stderr)


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(",")
    try:
        return int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX like 1,4, got {text!r}") from None


def _predict_ray(args: argparse.Namespace, paths: list[str]) -> int:
    from segdemo.ray_predict import predict_with_ray

    written, problems = predict_with_ray(args.model, paths, args.out, opacity=args.opacity,
                                         tta=args.tta, actors=args.actors,
                                         batch_size=args.batch_size, address=args.address)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"{written} photo{'s' if written != 1 else ''} segmented with Ray Data into {args.out}")
    return len(problems)


def _serve(args: argparse.Namespace) -> int:
    import time

    from segdemo.artifacts import check_model_dir
    from segdemo.serving import ServeError, ServeOptions, start, stop

    weights = Path(args.weights)
    ids = args.models or sorted(p.name for p in weights.iterdir()
                                if p.is_dir() and check_model_dir(p) is None)
    for model_id in ids:
        if (problem := check_model_dir(weights / model_id)) is not None:
            raise ServeError(f"cannot serve {model_id}: {problem}")
    options = ServeOptions({i: weights / i for i in ids}, replicas=args.replicas,
                           autoscale=args.autoscale, max_batch=args.max_batch,
                           batch_wait_s=args.batch_wait_ms / 1000, replica_cpus=args.replica_cpus,
                           max_body_bytes=int(args.max_body_mb * 2**20))
    options.check()
    print(f"starting {', '.join(ids)} on Ray Serve (loading the models takes a while)...",
          flush=True)
    url = start(options, host=args.host, port=args.port, address=args.address)
    print(f"serving at {url}: GET {url}/v1/models, POST {url}/v1/models/<id>:segment "
          "(Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop()
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    from segdemo.serve_load import (SERVE_LOAD_FILE, load_report, measure, read_photos, report,
                                    run_loadtest, serve_table, stamp, write_report)
    from segdemo.serve_client import ServeClient

    photos = read_photos(Path(args.photos), args.count)
    if args.in_process:
        from segdemo.serve_load import run_in_process

        settings = [run_in_process(Path(args.weights) / args.model, photos, levels=args.clients,
                                   requests=args.requests, max_batch=max_batch,
                                   batch_wait_s=args.batch_wait_ms / 1000)
                    for max_batch in args.max_batch]
    elif args.url:
        settings = [{"replicas": None, "max_batch": None, "url": args.url, **stamp(),
                     "levels": measure(ServeClient(args.url), args.model, photos, args.clients,
                                       args.requests, print)}]
    else:
        settings = run_loadtest(Path(args.weights) / args.model, args.model, photos,
                                levels=args.clients, replicas=args.replicas,
                                max_batches=args.max_batch, batch_wait_s=args.batch_wait_ms / 1000,
                                requests=args.requests, port=args.port)
    source = Path(args.photos).resolve()
    data = report(args.model, photos, f"{source.parent.name}/{source.name}", args.requests, settings)
    target = Path(args.json) if args.json else Path(args.weights) / SERVE_LOAD_FILE
    if args.append and target.is_file():
        data["settings"] = load_report(target)["settings"] + settings
    write_report(target, data)
    if not args.url:
        print(serve_table(data))
    print(f"Written to {target}")
    return 0


def _architectures() -> int:
    from segdemo.models import ARCHITECTURES

    for arch in ARCHITECTURES.values():
        print(f"{arch.id:28}{arch.input_size[0]}x{arch.input_size[1]}  {arch.title}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from segdemo.benchmark import format_report, run_benchmark

    if args.video:
        return _benchmark_video(args)
    if args.fidelity:
        from segdemo.benchmark import run_fidelity

        run_fidelity(args.models, args.weights, args.data, args.limit)
        return 0
    report = run_benchmark(args.models, args.weights, args.untrained, args.json,
                           runs=args.runs, warmup=args.warmup, train_steps=args.train_steps,
                           with_candidates=not args.no_candidates, runtimes=args.runtimes)
    print(format_report(report))
    return 0


def _benchmark_video(args: argparse.Namespace) -> int:
    """The video path per model (segdemo.video.measure_video) into <weights>/video_benchmark.json."""
    import tempfile

    from segdemo.artifacts import write_json
    from segdemo.video import VIDEO_FILE, measure_video, video_table

    weights = Path(args.weights) if args.weights else WEIGHTS_DIR
    ids = args.models or sorted(p.name for p in weights.iterdir() if (p / "card.json").is_file())
    with tempfile.TemporaryDirectory() as workdir:
        report = measure_video({i: weights / i for i in ids}, workdir=workdir)
    target = Path(args.json) if args.json else weights / VIDEO_FILE
    write_json(target, report)
    print(video_table(report))
    print(f"Written to {target}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from segdemo.export import export_model

    export_model(args.model, args.format, args.quantize, args.out, args.data, args.limit)
    return 0  # a float32 export that disagrees raises ExportError (exit 2)


def _robustness(args: argparse.Namespace) -> int:
    from segdemo.report import robustness_table
    from segdemo.robustness import run_robustness

    report = run_robustness(args.data, args.format, args.weights, args.models, split=args.split,
                            names=args.perturbations, limit=args.limit, json_path=args.json)
    print(robustness_table(report))
    return 0


def _results(args: argparse.Namespace) -> int:
    from segdemo import report

    if args.robustness:
        from segdemo.robustness import REPORT_FILE, load_report

        print(report.robustness_table(load_report(args.json or Path(args.weights) / REPORT_FILE)))
    elif args.speed:
        from segdemo.artifacts import BENCHMARK_FILE

        path = args.json or Path(args.weights) / BENCHMARK_FILE
        print(report.speed_tables(report.load_benchmark(path)))
    elif args.probe:
        print(report.probe_table(args.weights))
    elif args.recipes:
        print(report.recipes_table(args.weights))
    elif args.candidates or args.unseen:
        from segdemo.artifacts import CANDIDATES_FILE

        path = args.json or Path(args.weights) / CANDIDATES_FILE
        table = report.unseen_table if args.unseen else report.candidates_table
        print(table(report.load_candidates(path)))
    elif args.video:
        from segdemo.video import VIDEO_FILE, load_video_report, video_table

        print(video_table(load_video_report(args.json or Path(args.weights) / VIDEO_FILE)))
    elif args.serve:
        from segdemo.serve_load import SERVE_LOAD_FILE, load_report, serve_table

        print(serve_table(load_report(args.json or Path(args.weights) / SERVE_LOAD_FILE)))
    elif args.load:
        path = args.json or Path(args.weights) / report.LOAD_FILE
        print(report.load_tables(report.load_loadtest(path)))
    elif args.json:
        print("error: --json goes with --speed, --robustness or --serve.", file=sys.stderr)
        return 2
    else:
        print(report.results_table(args.weights))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from segdemo.errors import SegDemoError

    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "benchmark":
            return _benchmark(args)
        if args.command == "results":
            return _results(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "loadtest":
            return _loadtest(args)
        if args.command == "robustness":
            return _robustness(args)
        if args.command == "export":
            return _export(args)
        if args.command == "guide":
            return _guide(args)
        if args.command == "calibrate":
            return _calibrate(args)
        return _architectures()
    except SegDemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
