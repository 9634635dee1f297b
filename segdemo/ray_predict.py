"""`python -m segdemo predict --engine ray`: many photos through Ray Data, on this machine or a
cluster.

Ray Data reads the files (`read_binary_files`), `map_batches` hands batches to a pool of actors that
each load the model once (`SegmentActor`), and each actor writes its photos' mask, overlay and
cut-out with `segdemo.batch_export` exactly as the in-process path does; the driver writes the one
`summary.csv` from the rows the actors return. File stems are made unique by the driver before
anything runs (two `cat.*` photos give `cat_*` and `cat-2_*` as in process), since each actor only
sees its own photos. On a cluster, `out` must be a folder every node can write (a shared
filesystem); the photos are read by the driver's paths.

Ray is imported with this module: only `--engine ray` imports it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ray

from segdemo.batch_export import BatchExport, Timing, folder_writer, unique_stems
from segdemo.batching import configure_threads, predict_isolated
from segdemo.images import ImageError, open_image
from segdemo.ray_cluster import connect


class SegmentActor:
    """One model per actor; a call segments one batch of files and writes their results."""

    def __init__(self, model_dir: str, out: str, opacity: float, tta: str, threads: int):
        from segdemo.inference import Segmenter

        configure_threads(1, threads)
        self.segmenter = Segmenter.load(model_dir, tta=tta)
        self.export = BatchExport(folder_writer(Path(out)), opacity)
        self.tta = tta

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, errors, images, kept = [""] * len(batch["path"]), [""] * len(batch["path"]), [], []
        for i, (data, path) in enumerate(zip(batch["bytes"], batch["path"])):
            try:
                images.append(open_image(bytes(data), Path(path).name))
                kept.append(i)
            except ImageError as exc:
                errors[i] = str(exc)
        outcomes = predict_isolated(self.segmenter, images) if images else []
        for i, image, (prediction, error, _, size) in zip(kept, images, outcomes):
            if error is not None:
                errors[i] = f"{batch['path'][i]}: {error}"
                continue
            self.export.add(str(batch["photo"][i]), self.segmenter.arch_id, image, prediction.mask,
                            prediction.input_probabilities, self.segmenter.classes,
                            Timing(prediction.seconds, batch_size=size), tta=self.tta,
                            stem=str(batch["stem"][i]))
            rows[i] = json.dumps(self.export.rows.pop())
        return {"index": batch["index"], "row": np.array(rows, object),
                "error": np.array(errors, object)}


def predict_with_ray(model_dir: str | Path, paths: Sequence[str], out: str | Path, *,
                     opacity: float = 0.5, tta: str = "none", actors: int | None = None,
                     batch_size: int = 8, address: str | None = None) -> tuple[int, list[str]]:
    """Segment `paths` into `out` with `actors` model actors (default: one per free CPU of the
    cluster, each with one TensorFlow thread) sharing the free CPUs; returns (photos written,
    problems)."""
    connect(address)
    free = ray.available_resources().get("CPU", 1)
    actors = actors or max(1, min(int(free), len(paths)))
    cpus = max(0.1, free / actors)
    # Reading is light I/O: it reserves no CPU, which the model actors hold (else the reads wait
    # for CPUs the actors took, and the actors for blocks the reads cannot make).
    table = ray.data.read_binary_files([os.path.abspath(p) for p in paths], include_paths=True,
                                       num_cpus=0)
    order = {os.path.abspath(p): i for i, p in enumerate(paths)}
    stems = unique_stems(paths)

    def label(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = np.array([order[p] for p in batch["path"]])
        return {**batch, "index": index, "photo": np.array([paths[i] for i in index], object),
                "stem": np.array([stems[i] for i in index], object)}

    results = table.map_batches(label, num_cpus=0).map_batches(
        SegmentActor, fn_constructor_args=(str(model_dir), str(out), opacity, tta,
                                           max(1, round(cpus))),
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus).take_all()
    results.sort(key=lambda r: r["index"])
    export = BatchExport(folder_writer(Path(out)), opacity)
    export.rows = [json.loads(r["row"]) for r in results if r["row"]]
    if export.rows:
        export.close()
    return len(export.rows), [r["error"] for r in results if r["error"]]
