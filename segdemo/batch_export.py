"""Many photos' results as files: per photo and model a mask PNG (class indices), an overlay and a
cut-out, plus one CSV of class shares and timings. The dashboard writes them into one ZIP,
`python -m segdemo predict` into its output folder, with the same names and columns.

Results are written one at a time as they are made (the caller rebuilds each full-resolution
mask, writes it and lets it go), so a batch never holds more than one photo's full-size arrays.
"""
from __future__ import annotations

import csv
import glob
import io
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from segdemo.classes import ClassInfo
from segdemo.cutout import background_index, cutout_png
from segdemo.images import is_image_file
from segdemo.inference import mask_png, overlay, png_bytes

SUMMARY_FILE = "summary.csv"
Write = Callable[[str, bytes], None]  # (relative file name, content)


@dataclass(frozen=True)
class Timing:
    """Where one result's time went; the queue figures exist only where a queue served it."""

    segmenter_seconds: float
    queue_seconds: float | None = None
    batch_size: int | None = None


class BatchExport:
    """Writes each result's files through `write` and collects one CSV row per result;
    `close()` writes the CSV. Stems are made unique per folder (two photos named `cat.jpg` and
    `cat.png` give `cat_*` and `cat-2_*`)."""

    def __init__(self, write: Write, opacity: float = 0.5):
        self._write = write
        self.opacity = opacity
        self.rows: list[dict] = []
        self._stems: set[tuple[str, str]] = set()

    def add(self, photo: str, model: str, image: Image.Image, mask: np.ndarray,
            probabilities: np.ndarray, classes: Sequence[ClassInfo], timing: Timing,
            folder: str = "", tta: str = "none", stem: str | None = None) -> list[str]:
        """Write `image`'s mask (full resolution, class indices), overlay and cut-out (none when
        the classes have no background); returns the names written. `stem` names the files when
        the caller made the names unique itself (`unique_stems`: several exports, one folder)."""
        prefix = f"{folder}/" if folder else ""
        stem = stem or self._unique(folder, photo_stem(photo))
        files = {f"{prefix}{stem}_mask.png": mask_png(mask, classes),
                 f"{prefix}{stem}_overlay.png": png_bytes(overlay(image, mask, classes,
                                                                  self.opacity))}
        if background_index(classes) is not None:
            files[f"{prefix}{stem}_cutout.png"] = cutout_png(image, probabilities, classes)
        for name, data in files.items():
            self._write(name, data)
        counts = np.bincount(mask.reshape(-1), minlength=len(classes))[:len(classes)]
        shares = counts / max(mask.size, 1)
        self.rows.append({
            "photo": photo, "model": model, "tta": tta, "width": image.width,
            "height": image.height,
            **{f"share_{c.name}": round(float(s), 6) for c, s in zip(classes, shares)},
            "segmenter_ms": round(timing.segmenter_seconds * 1000, 1),
            "queue_ms": None if timing.queue_seconds is None
            else round(timing.queue_seconds * 1000, 1),
            "batch_size": timing.batch_size, "files": " ".join(files)})
        return list(files)

    def close(self) -> None:
        """Write the CSV (columns: every class seen in any row)."""
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        self._write(SUMMARY_FILE, text.getvalue().encode())

    def _unique(self, folder: str, stem: str) -> str:
        candidate, n = stem, 1
        while (folder, candidate) in self._stems:
            n += 1
            candidate = f"{stem}-{n}"
        self._stems.add((folder, candidate))
        return candidate


def photo_stem(photo: str) -> str:
    return Path(photo).stem or "image"


def unique_stems(photos: Sequence[str]) -> list[str]:
    """The stems one `BatchExport` would give `photos` in this order, for exports that write into
    one folder from several processes (Ray Data actors)."""
    names = BatchExport(lambda name, data: None)
    return [names._unique("", photo_stem(p)) for p in photos]


def folder_writer(out: Path) -> Write:
    """Write files under `out` (sub-folders made as needed)."""
    def write(name: str, data: bytes) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return write


def zip_bytes(fill: Callable[[BatchExport], None], opacity: float = 0.5) -> bytes:
    """A ZIP made by `fill(export)`, with the CSV. PNGs are stored, not deflated again (they are
    compressed already; deflating them costs seconds per 12-megapixel photo for ~1 %)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        def write(name: str, data: bytes) -> None:
            method = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
        export = BatchExport(write, opacity)
        fill(export)
        export.close()
    return buffer.getvalue()


def expand_inputs(arguments: Iterable[str],
                  accept: Callable[[Path], bool] = is_image_file) -> tuple[list[str], list[str]]:
    """(files, problems) for command-line arguments that are files, folders or glob patterns.

    A folder gives its files that `accept` takes (sorted, not recursive); a pattern (`*`, `?`,
    `[...]`, `**` for any depth) gives the files it matches; anything else is passed on as it is,
    so that opening it names the problem. A folder or pattern that yields nothing is a problem.
    Each file comes once, in the order first named."""
    files: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and accept(p))
            if not found:
                problems.append(f"{argument} holds no image files.")
        elif glob.has_magic(argument):
            found = sorted(p for p in glob.glob(argument, recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{argument} matches no file.")
        else:
            found = [argument]
        for file in found:
            if file not in seen:
                seen.add(file)
                files.append(file)
    return files, problems


class ProgressBar:
    """One self-redrawing line on a terminal (`[######----] 3/10 name`); silent when the stream is
    not a terminal, where the per-photo lines already show progress."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24):
        self.total, self.done, self.width, self.name = total, 0, width, ""
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        filled = self.width * self.done // max(self.total, 1)
        return f"[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {self.name}"

    def step(self, name: str = "") -> None:
        """One more done (`name`: what it was)."""
        self.done, self.name = self.done + 1, name
        self._draw(self.line())

    def note(self, text: str, stream: TextIO | None = None) -> None:
        """Print a line (to stdout by default) without tearing the bar: it is cleared first and
        drawn again below the line."""
        self._draw("")
        print(text, file=stream or sys.stdout, flush=True)
        if self.done:
            self._draw(self.line())

    def _draw(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
