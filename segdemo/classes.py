"""Class definitions: names and display colours travel with every dataset and model card."""
from __future__ import annotations

from dataclasses import dataclass

# Colour-blind-friendly defaults (Okabe-Ito), used when a dataset names classes but no colours.
_DEFAULT_COLOURS = [
    (0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
    (213, 94, 0), (240, 228, 66), (0, 0, 0), (153, 153, 153), (117, 112, 179),
]


@dataclass(frozen=True)
class ClassInfo:
    """One segmentation class: its display name and RGB colour."""

    name: str
    color: tuple[int, int, int]

    def to_json(self) -> dict:
        return {"name": self.name, "color": list(self.color)}

    @classmethod
    def from_json(cls, data: dict) -> "ClassInfo":
        return cls(str(data["name"]), tuple(int(c) for c in data["color"]))


def default_color(index: int) -> tuple[int, int, int]:
    """A distinct colour for class `index`; beyond the palette, a deterministic hash colour."""
    if index < len(_DEFAULT_COLOURS):
        return _DEFAULT_COLOURS[index]
    return ((index * 97) % 256, (index * 57 + 80) % 256, (index * 151 + 160) % 256)


def make_classes(names: list[str]) -> list[ClassInfo]:
    """Classes for `names`, coloured from the default palette."""
    return [ClassInfo(n, default_color(i)) for i, n in enumerate(names)]


# Oxford-IIIT Pet trimaps: file value 1 = pet, 2 = background, 3 = border (official README;
# a corner pixel is 2). Class index = file value - 1.
PET_CLASSES = [
    ClassInfo("pet", (255, 140, 0)),
    ClassInfo("background", (40, 40, 90)),
    ClassInfo("border", (250, 250, 120)),
]

# PASCAL VOC 2012: 21 classes, colours from the dataset's own palette.
VOC_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved label index)."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


VOC_CLASSES = [ClassInfo(n, c) for n, c in zip(VOC_NAMES, voc_palette(len(VOC_NAMES)))]
