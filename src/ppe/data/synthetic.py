"""Procedural hard-hat scenes written as a Pascal VOC dataset (``ppe data synth``).

Each scene is a background (sky and ground, walls, noise, buildings, scaffolding) with people: a
body (clothes, sometimes a hi-vis vest) and a head (an ellipse in one of several skin tones). A
fraction ``head_fraction`` of the heads are bare (hair, sometimes a soft cap) and labelled
``head``; the others wear a hard hat (dome, ridge and brim in white, yellow, orange, red or blue)
and are labelled ``helmet``, with the box covering the helmeted head from the top of the dome to
the chin, as in the real hard-hat data. Nearer people are larger and lower in the frame and may
hide people behind them; crates, barriers and pipes in front may hide parts of anyone; round
things that are not heads (balls, signs, cones, drums, lamp domes) are scattered as distractors.

Boxes are tight around the *visible* pixels of each head (an owner map records which object each
pixel shows), clipped to the image; a head with less than 40% of its pixels visible gets no box.
Pixel boxes follow the VOC convention of :mod:`ppe.data.voc` (1-based inclusive); loaders
normalise them to ``[xmin, ymin, xmax, ymax]`` in [0, 1].

Every scene is drawn from its own generator seeded with ``(seed, index)``, so a dataset is a pure
function of the config (same seed, same bytes, same :func:`ppe.data.voc.dataset_hash`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from ppe.config import SplitConfig, SynthConfig
from ppe.data import voc
from ppe.errors import DataError

logger = logging.getLogger(__name__)

HELMET = "helmet"
HEAD = "head"
MIN_VISIBLE_FRACTION = 0.4
MIN_BOX_PIXELS = 4
JPEG_QUALITY = 92

Colour = tuple[int, int, int]

HELMET_COLOURS: tuple[Colour, ...] = (
    (236, 236, 232),  # white
    (246, 204, 22),  # yellow
    (244, 122, 24),  # orange
    (204, 34, 30),  # red
    (32, 84, 196),  # blue
)
SKIN_TONES: tuple[Colour, ...] = (
    (255, 222, 196),
    (240, 196, 160),
    (226, 174, 128),
    (198, 138, 96),
    (164, 110, 72),
    (124, 82, 54),
    (92, 62, 42),
)
HAIR_COLOURS: tuple[Colour, ...] = (
    (22, 18, 14),
    (58, 40, 26),
    (104, 70, 40),
    (170, 140, 96),
    (128, 124, 120),
)
CAP_COLOURS: tuple[Colour, ...] = ((30, 40, 80), (40, 40, 44), (60, 90, 50), (110, 110, 112))
CLOTHES_COLOURS: tuple[Colour, ...] = (
    (36, 52, 96),
    (70, 72, 78),
    (28, 28, 30),
    (112, 84, 60),
    (60, 96, 64),
    (150, 40, 40),
    (200, 200, 196),
    (96, 120, 160),
)
TROUSER_COLOURS: tuple[Colour, ...] = ((34, 40, 62), (30, 30, 32), (150, 130, 96), (70, 70, 74))
VEST_COLOURS: tuple[Colour, ...] = ((206, 238, 44), (250, 128, 24))
DISTRACTOR_COLOURS: tuple[Colour, ...] = (*HELMET_COLOURS, (70, 150, 60), (150, 100, 60))


@dataclass(frozen=True)
class SceneObject:
    """One labelled object of a scene.

    Attributes:
        name: ``helmet`` or ``head``.
        box: Pixel box ``(xmin, ymin, xmax, ymax)``, 1-based inclusive, tight around the visible
            pixels and inside the image.
        visible_fraction: Visible pixels / pixels of the whole (unoccluded, uncut) head.
        truncated: The head is cut by the image border.
    """

    name: str
    box: tuple[int, int, int, int]
    visible_fraction: float
    truncated: bool


@dataclass
class Scene:
    """A rendered scene: the RGB image and its labelled objects."""

    image: Image.Image
    objects: list[SceneObject]


@dataclass
class SynthReport:
    """What :func:`synthesize` wrote.

    Attributes:
        out: The VOC dataset folder.
        images_per_split: Number of scenes per split.
        objects_per_class: Boxes per class.
        hash: :func:`ppe.data.voc.dataset_hash` of ``out``.
        seconds: Wall-clock time of rendering and writing.
    """

    out: Path
    images_per_split: dict[str, int] = field(default_factory=dict)
    objects_per_class: dict[str, int] = field(default_factory=dict)
    hash: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """One-line summary."""
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        classes = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items())
        return (
            f"{sum(self.images_per_split.values())} scenes ({splits}); objects: {classes}; "
            f"{self.seconds:.1f} s; sha256 {self.hash}"
        )


# ----------------------------------------------------------------------------------------------
# Drawing primitives: every shape goes to the RGB canvas and to the owner map.

Shape = tuple[Any, ...]


class _Canvas:
    """An RGB image plus an owner map (0 = not a labelled head, k = head k)."""

    def __init__(self, background: Image.Image) -> None:
        self.image = background
        self.draw = ImageDraw.Draw(self.image)
        self.owner = Image.new("L", background.size, 0)
        self.owner_draw = ImageDraw.Draw(self.owner)

    def shape(self, shape: Shape, owner: int = 0) -> None:
        _draw_shape(self.draw, shape, None)
        _draw_shape(self.owner_draw, shape, owner)

    def background_shape(self, shape: Shape) -> None:
        _draw_shape(self.draw, shape, None)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, fill: int | None) -> None:
    kind = shape[0]
    colour: Any = shape[-1] if fill is None else fill
    if kind == "ellipse":
        draw.ellipse(shape[1], fill=colour)
    elif kind == "chord":
        draw.chord(shape[1], shape[2], shape[3], fill=colour)
    elif kind == "rect":
        draw.rectangle(shape[1], fill=colour)
    elif kind == "polygon":
        draw.polygon(shape[1], fill=colour)
    elif kind == "line":
        draw.line(shape[1], fill=colour, width=shape[2])
    else:  # pragma: no cover - a programming error
        raise ValueError(f"unknown shape {kind!r}")


def _shade(colour: Colour, factor: float) -> Colour:
    return (
        min(255, max(0, round(colour[0] * factor))),
        min(255, max(0, round(colour[1] * factor))),
        min(255, max(0, round(colour[2] * factor))),
    )


def _pick(rng: np.random.Generator, options: Sequence[Colour], jitter: float = 0.08) -> Colour:
    base = options[int(rng.integers(len(options)))]
    return _shade(base, 1.0 + float(rng.uniform(-jitter, jitter)))


# ----------------------------------------------------------------------------------------------
# Backgrounds


def _gradient(
    top: Colour, bottom: Colour, width: int, height: int, start: int, stop: int
) -> npt.NDArray[np.float32]:
    rows = np.linspace(0.0, 1.0, max(stop - start, 1), dtype=np.float32)[:, None]
    colours = (1 - rows) * np.array(top, np.float32) + rows * np.array(bottom, np.float32)
    return np.repeat(colours[:, None, :], width, axis=1)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = int(rng.integers(3))
    canvas = np.zeros((height, width, 3), np.float32)
    if kind == 0:  # outdoor: sky over ground
        horizon = int(height * rng.uniform(0.25, 0.6))
        sky_top = (
            int(rng.integers(70, 150)),
            int(rng.integers(130, 190)),
            int(rng.integers(200, 250)),
        )
        sky_low = _shade(sky_top, float(rng.uniform(1.05, 1.3)))
        ground = _pick(rng, ((120, 100, 80), (110, 110, 104), (90, 120, 70), (150, 130, 100)), 0.15)
        canvas[:horizon] = _gradient(sky_top, sky_low, width, height, 0, horizon)
        canvas[horizon:] = _gradient(
            _shade(ground, 1.1), _shade(ground, 0.8), width, height, horizon, height
        )
    elif kind == 1:  # indoor: wall over floor
        floor_line = int(height * rng.uniform(0.45, 0.8))
        wall = _pick(rng, ((200, 196, 186), (150, 150, 156), (170, 120, 90), (120, 140, 150)), 0.12)
        floor = _pick(rng, ((90, 90, 92), (130, 110, 80), (60, 70, 60)), 0.12)
        canvas[:floor_line] = _gradient(
            _shade(wall, 0.9), _shade(wall, 1.05), width, height, 0, floor_line
        )
        canvas[floor_line:] = _gradient(
            _shade(floor, 1.1), _shade(floor, 0.85), width, height, floor_line, height
        )
    else:  # textured: smooth colour noise
        cells = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
        colours = rng.uniform(40, 210, size=(cells[1], cells[0], 3))
        grey = colours.mean(axis=2, keepdims=True)
        coarse = (0.45 * colours + 0.55 * grey).astype(np.uint8)  # muted, not rainbow
        smooth = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
        canvas[:] = np.asarray(smooth, np.float32)
    # Fine texture everywhere.
    small = rng.normal(0.0, float(rng.uniform(3, 14)), size=(height // 4 + 1, width // 4 + 1, 1))
    texture = np.kron(small, np.ones((4, 4, 1)))[:height, :width]
    canvas += texture.astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


def _structures(rng: np.random.Generator, canvas: _Canvas, width: int, height: int) -> None:
    if rng.random() < 0.5:  # buildings with windows
        for _ in range(int(rng.integers(1, 4))):
            bw = int(width * rng.uniform(0.15, 0.45))
            bh = int(height * rng.uniform(0.2, 0.7))
            x0 = int(rng.uniform(-0.1, 0.95) * width)
            y1 = int(height * rng.uniform(0.45, 0.8))
            colour = _pick(rng, ((150, 150, 150), (160, 90, 70), (190, 180, 160), (100, 110, 120)))
            canvas.background_shape(("rect", (x0, y1 - bh, x0 + bw, y1), colour))
            window = _shade(colour, float(rng.uniform(0.4, 0.7)))
            step = int(rng.integers(10, 22))
            for wy in range(y1 - bh + 4, y1 - step // 2, step):
                for wx in range(x0 + 4, x0 + bw - step // 2, step):
                    canvas.background_shape(
                        ("rect", (wx, wy, wx + step // 2, wy + step // 2), window)
                    )
    if rng.random() < 0.45:  # scaffolding: poles, ledgers and braces
        colour = _pick(rng, ((150, 150, 150), (90, 90, 96), (200, 120, 40), (60, 80, 140)))
        line_width = int(rng.integers(2, 5))
        x0 = int(rng.uniform(-0.2, 0.6) * width)
        x1 = x0 + int(width * rng.uniform(0.3, 0.8))
        top = int(height * rng.uniform(0.0, 0.3))
        bottom = int(height * rng.uniform(0.6, 1.0))
        pitch = int(rng.integers(24, 60))
        for x in range(x0, x1 + 1, pitch):
            canvas.background_shape(("line", [(x, top), (x, bottom)], line_width, colour))
        for y in range(top, bottom, max(pitch // 2 + 8, 16)):
            canvas.background_shape(("line", [(x0, y), (x1, y)], line_width, colour))
        for x in range(x0, x1 - pitch + 1, pitch * 2):
            canvas.background_shape(
                ("line", [(x, bottom), (x + pitch, top)], max(1, line_width - 1), colour)
            )


def _distractors(
    rng: np.random.Generator, canvas: _Canvas, width: int, height: int, sizes: tuple[float, float]
) -> None:
    """Round things that are not heads, drawn on the background (never labelled)."""
    for _ in range(int(rng.integers(0, 5))):
        size = float(rng.uniform(*sizes)) * height * float(rng.uniform(0.7, 1.4))
        cx = float(rng.uniform(0, width))
        cy = float(rng.uniform(0.1, 0.95) * height)
        colour = _pick(rng, DISTRACTOR_COLOURS)
        kind = int(rng.integers(5))
        half = size / 2
        if kind == 0:  # ball or round sign
            canvas.background_shape(
                ("ellipse", (cx - half, cy - half, cx + half, cy + half), colour)
            )
            if rng.random() < 0.5:
                inner = half * 0.65
                canvas.background_shape(
                    ("ellipse", (cx - inner, cy - inner, cx + inner, cy + inner), (240, 240, 240))
                )
        elif kind == 1:  # traffic cone
            canvas.background_shape(
                (
                    "polygon",
                    [(cx, cy - size), (cx - half, cy + half), (cx + half, cy + half)],
                    (240, 110, 20),
                )
            )
            canvas.background_shape(
                ("rect", (cx - half * 0.45, cy - half * 0.3, cx + half * 0.45, cy), (240, 240, 240))
            )
        elif kind == 2:  # drum or barrel seen from the side, with a dome-like lid
            canvas.background_shape(("rect", (cx - half, cy - half, cx + half, cy + size), colour))
            canvas.background_shape(
                (
                    "ellipse",
                    (cx - half, cy - half * 1.3, cx + half, cy - half * 0.7),
                    _shade(colour, 1.15),
                )
            )
        elif kind == 3:  # cable drum / log end
            canvas.background_shape(
                ("ellipse", (cx - half, cy - half, cx + half, cy + half), (150, 104, 62))
            )
            canvas.background_shape(
                (
                    "ellipse",
                    (cx - half * 0.35, cy - half * 0.35, cx + half * 0.35, cy + half * 0.35),
                    (96, 64, 40),
                )
            )
        else:  # hanging lamp: a helmet-coloured dome with no face under it
            canvas.background_shape(("line", [(cx, 0), (cx, cy - half * 0.6)], 1, (40, 40, 40)))
            canvas.background_shape(
                (
                    "chord",
                    (cx - half, cy - half * 0.6, cx + half, cy + half * 0.6),
                    180,
                    360,
                    colour,
                )
            )


def _foreground(rng: np.random.Generator, canvas: _Canvas, width: int, height: int) -> None:
    """Objects in front of the people: they hide parts of bodies and sometimes of heads."""
    for _ in range(int(rng.integers(0, 3))):
        kind = int(rng.integers(3))
        if kind == 0:  # crate or box
            cw = width * rng.uniform(0.12, 0.3)
            ch = height * rng.uniform(0.12, 0.35)
            x0 = float(rng.uniform(-0.1, 0.95) * width)
            y0 = float(rng.uniform(0.45, 0.95) * height)
            colour = _pick(rng, ((150, 110, 64), (120, 90, 50), (80, 100, 140)), 0.12)
            canvas.shape(("rect", (x0, y0, x0 + cw, y0 + ch), colour))
            canvas.shape(("line", [(x0, y0), (x0 + cw, y0 + ch)], 2, _shade(colour, 0.7)))
        elif kind == 1:  # striped barrier
            y0 = float(rng.uniform(0.35, 0.9) * height)
            bar = max(4.0, height * float(rng.uniform(0.03, 0.07)))
            x0 = float(rng.uniform(-0.2, 0.5) * width)
            x1 = x0 + width * float(rng.uniform(0.3, 0.8))
            canvas.shape(("rect", (x0, y0, x1, y0 + bar), (235, 235, 235)))
            stripe = bar * 1.5
            red = (210, 40, 36)
            for sx in np.arange(x0, x1, stripe * 2):
                canvas.shape(("rect", (float(sx), y0, float(sx) + stripe, y0 + bar), red))
        else:  # pipe or pole
            x0 = float(rng.uniform(0, width))
            thickness = int(max(3, height * rng.uniform(0.02, 0.05)))
            tilt = float(rng.uniform(-0.3, 0.3)) * height
            colour = _pick(rng, ((140, 140, 144), (90, 90, 94), (200, 160, 40)))
            canvas.shape(("line", [(x0, -5), (x0 + tilt, height + 5)], thickness, colour))


# ----------------------------------------------------------------------------------------------
# People


@dataclass
class _Person:
    cx: float
    top: float  # top of the labelled head box (dome top for a helmet)
    size: float  # height of the labelled head box in pixels
    helmet: bool


def _head_shapes(rng: np.random.Generator, person: _Person) -> list[Shape]:
    """Shapes of the labelled part: the head, with hair or cap, or with a hard hat."""
    s, cx, y0 = person.size, person.cx, person.top
    skin = _pick(rng, SKIN_TONES, 0.05)
    aspect = float(rng.uniform(0.9, 1.08))
    facing = float(rng.uniform(-1.0, 1.0))  # -1 left .. 1 right; shifts the face features
    back_view = rng.random() < 0.15
    shapes: list[Shape] = []
    if person.helmet:
        face_top = y0 + 0.2 * s
        face_w = 0.78 * 0.8 * s * aspect
        shapes.append(("ellipse", (cx - face_w / 2, face_top, cx + face_w / 2, y0 + s), skin))
        if back_view:
            hair = _pick(rng, HAIR_COLOURS)
            shapes.append(
                (
                    "ellipse",
                    (cx - face_w / 2, face_top + 0.1 * s, cx + face_w / 2, y0 + 0.9 * s),
                    hair,
                )
            )
        colour = _pick(rng, HELMET_COLOURS, 0.06)
        dome_w = face_w * float(rng.uniform(1.1, 1.2))
        dome_h = 0.42 * s * float(rng.uniform(0.92, 1.05))
        shift = 0.05 * s * facing
        shapes.append(
            ("chord", (cx - dome_w / 2, y0, cx + dome_w / 2, y0 + 2 * dome_h), 180, 360, colour)
        )
        brim_w = dome_w * float(rng.uniform(1.18, 1.32))
        brim_y = y0 + dome_h * 0.86
        brim_h = max(2.0, 0.1 * s)
        shapes.append(
            (
                "ellipse",
                (cx + shift - brim_w / 2, brim_y, cx + shift + brim_w / 2, brim_y + brim_h),
                _shade(colour, 0.88),
            )
        )
        ridge_w = max(1, round(0.08 * s))
        shapes.append(("line", [(cx, y0 + 0.04 * s), (cx, brim_y)], ridge_w, _shade(colour, 0.8)))
        glint = 0.12 * s
        gx, gy = cx - dome_w * 0.22, y0 + dome_h * 0.35
        shapes.append(
            (
                "ellipse",
                (gx - glint, gy - glint / 2, gx + glint, gy + glint / 2),
                _shade(colour, 1.15),
            )
        )
        eye_y = y0 + 0.64 * s
    else:
        face_w = 0.78 * s * aspect
        shapes.append(("ellipse", (cx - face_w / 2, y0, cx + face_w / 2, y0 + s), skin))
        style = rng.random()
        if style < 0.12:  # a soft cap with a visor: a hat, but not a hard hat
            cap = _pick(rng, CAP_COLOURS)
            shapes.append(
                (
                    "chord",
                    (cx - face_w * 0.52, y0, cx + face_w * 0.52, y0 + 0.62 * s),
                    180,
                    360,
                    cap,
                )
            )
            visor = face_w * 0.55 * (1 if facing >= 0 else -1)
            shapes.append(
                (
                    "polygon",
                    [
                        (cx, y0 + 0.26 * s),
                        (cx + visor, y0 + 0.3 * s),
                        (cx + visor, y0 + 0.34 * s),
                        (cx, y0 + 0.34 * s),
                    ],
                    _shade(cap, 0.8),
                )
            )
        elif style < 0.9:  # hair
            hair = _pick(rng, HAIR_COLOURS)
            depth = float(rng.uniform(0.55, 0.85)) * s
            shapes.append(
                ("chord", (cx - face_w * 0.53, y0, cx + face_w * 0.53, y0 + depth), 180, 360, hair)
            )
            if back_view:
                shapes.append(
                    ("ellipse", (cx - face_w / 2, y0, cx + face_w / 2, y0 + 0.9 * s), hair)
                )
        eye_y = y0 + 0.55 * s
    if not back_view:
        eye = max(1.0, 0.055 * s)
        spread = 0.2 * face_w
        offset = 0.12 * face_w * facing
        for side in (-1, 1):
            ex = cx + offset + side * spread
            shapes.append(("ellipse", (ex - eye, eye_y - eye, ex + eye, eye_y + eye), (30, 24, 20)))
        mouth_y = eye_y + 0.22 * s
        shapes.append(
            (
                "line",
                [(cx + offset - spread * 0.7, mouth_y), (cx + offset + spread * 0.7, mouth_y)],
                max(1, round(0.03 * s)),
                _shade(skin, 0.6),
            )
        )
    return shapes


def _body_shapes(rng: np.random.Generator, person: _Person) -> list[Shape]:
    """Legs, torso (maybe a hi-vis vest), arms and neck below the head box."""
    s, cx = person.size, person.cx
    chin = person.top + s
    head_w = 0.62 * s
    clothes = _pick(rng, CLOTHES_COLOURS, 0.1)
    trousers = _pick(rng, TROUSER_COLOURS, 0.1)
    skin = _pick(rng, SKIN_TONES, 0.05)
    shoulder = head_w * float(rng.uniform(1.35, 1.7))
    hip = shoulder * 0.82
    torso_top = chin + 0.05 * s
    torso_bottom = torso_top + 2.3 * s
    leg_bottom = torso_bottom + 2.6 * s
    shapes: list[Shape] = [
        ("rect", (cx - hip * 0.9, torso_bottom - 2, cx - hip * 0.06, leg_bottom), trousers),
        ("rect", (cx + hip * 0.06, torso_bottom - 2, cx + hip * 0.9, leg_bottom), trousers),
    ]
    torso = [
        (cx - shoulder, torso_top + 0.2 * s),
        (cx - shoulder * 0.8, torso_top),
        (cx + shoulder * 0.8, torso_top),
        (cx + shoulder, torso_top + 0.2 * s),
        (cx + hip, torso_bottom),
        (cx - hip, torso_bottom),
    ]
    shapes.append(("polygon", torso, clothes))
    if rng.random() < 0.4:  # hi-vis vest with two reflective bands
        vest = _pick(rng, VEST_COLOURS, 0.05)
        inset = shoulder * 0.22
        shapes.append(
            (
                "polygon",
                [
                    (cx - shoulder + inset, torso_top + 0.15 * s),
                    (cx - 0.12 * s, torso_top),
                    (cx + 0.12 * s, torso_top),
                    (cx + shoulder - inset, torso_top + 0.15 * s),
                    (cx + hip * 0.95, torso_bottom),
                    (cx - hip * 0.95, torso_bottom),
                ],
                vest,
            )
        )
        for band in (0.45, 0.75):
            by = torso_top + band * (torso_bottom - torso_top)
            shapes.append(
                (
                    "rect",
                    (cx - hip * 1.02, by, cx + hip * 1.02, by + max(2.0, 0.12 * s)),
                    (196, 200, 204),
                )
            )
    arm_w = max(2, round(0.28 * s))
    for side in (-1, 1):
        sx = cx + side * shoulder * 0.92
        angle = float(rng.uniform(-0.35, 0.9))  # radians away from hanging straight down
        length = 2.1 * s
        hx = sx + side * math.sin(angle) * length
        hy = torso_top + 0.15 * s + math.cos(angle) * length
        shapes.append(("line", [(sx, torso_top + 0.15 * s), (hx, hy)], arm_w, clothes))
        hand = 0.17 * s
        shapes.append(("ellipse", (hx - hand, hy - hand, hx + hand, hy + hand), skin))
    neck_w = 0.3 * head_w
    shapes.append(
        ("rect", (cx - neck_w / 2, chin - 0.15 * s, cx + neck_w / 2, torso_top + 0.05 * s), skin)
    )
    return shapes


def _shapes_mask_area(
    shapes: Sequence[Shape], origin: tuple[float, float], size: tuple[int, int]
) -> int:
    """Pixels of the union of shapes drawn alone on an unbounded canvas (via a local mask)."""
    mask = Image.new("1", size, 0)
    draw = ImageDraw.Draw(mask)
    ox, oy = origin
    for shape in shapes:
        _draw_shape(draw, _translate(shape, -ox, -oy), 1)
    return int(np.count_nonzero(np.asarray(mask)))


def _translate(shape: Shape, dx: float, dy: float) -> Shape:
    kind = shape[0]
    if kind in ("ellipse", "chord", "rect"):
        x0, y0, x1, y1 = shape[1]
        return (kind, (x0 + dx, y0 + dy, x1 + dx, y1 + dy), *shape[2:])
    return (kind, [(x + dx, y + dy) for x, y in shape[1]], *shape[2:])


def _shapes_bounds(shapes: Sequence[Shape]) -> tuple[float, float, float, float]:
    xs: list[float] = []
    ys: list[float] = []
    for shape in shapes:
        if shape[0] in ("ellipse", "chord", "rect"):
            x0, y0, x1, y1 = shape[1]
            xs += [x0, x1]
            ys += [y0, y1]
        else:
            pad = shape[2] / 2 if shape[0] == "line" else 0
            xs += [x - pad for x, _ in shape[1]] + [x + pad for x, _ in shape[1]]
            ys += [y - pad for _, y in shape[1]] + [y + pad for _, y in shape[1]]
    return min(xs), min(ys), max(xs), max(ys)


def _place_people(
    rng: np.random.Generator, synth: SynthConfig, width: int, height: int
) -> list[_Person]:
    count = int(rng.integers(1, synth.max_people + 1))
    low, high = synth.min_head_size * height, synth.max_head_size * height
    people: list[_Person] = []
    for _ in range(count):
        for _attempt in range(12):
            size = float(rng.uniform(low, high))
            depth = (size - low) / max(high - low, 1e-6)  # 0 far .. 1 near
            centre_y = (0.22 + 0.4 * depth + float(rng.normal(0.0, 0.1))) * height
            top = float(np.clip(centre_y - size / 2, -0.45 * size, height - 0.6 * size))
            if rng.random() < 0.15:  # cut by the left or right border
                inset = float(rng.uniform(-0.15, 0.45)) * size  # < 0: centre outside the image
                cx = inset if rng.random() < 0.5 else width - inset
            else:
                cx = float(rng.uniform(0.45 * size, width - 0.45 * size))
            candidate = (cx - 0.45 * size, top, cx + 0.45 * size, top + size)
            if all(_overlap(candidate, other) < 0.2 for other in _boxes(people)):
                people.append(
                    _Person(cx, top, size, helmet=bool(rng.random() >= synth.head_fraction))
                )
                break
    people.sort(key=lambda person: person.size)  # far (small) first, near (large) drawn last
    return people


def _boxes(people: Sequence[_Person]) -> list[tuple[float, float, float, float]]:
    return [(p.cx - 0.45 * p.size, p.top, p.cx + 0.45 * p.size, p.top + p.size) for p in people]


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def render_scene(rng: np.random.Generator, synth: SynthConfig) -> Scene:
    """Draw one scene.

    Args:
        rng: The scene's generator (all randomness comes from it).
        synth: Image size, number of people, head sizes and the bare-head fraction.

    Returns:
        The RGB image (``synth.width`` x ``synth.height``) and its objects, with pixel boxes
        ``(xmin, ymin, xmax, ymax)`` 1-based inclusive around the visible pixels. May hold no
        objects (every head hidden or cut); :func:`synthesize` draws again in that case.
    """
    width, height = synth.width, synth.height
    canvas = _Canvas(_background(rng, width, height))
    _structures(rng, canvas, width, height)
    _distractors(rng, canvas, width, height, (synth.min_head_size, synth.max_head_size))
    people = _place_people(rng, synth, width, height)
    heads: list[tuple[_Person, list[Shape]]] = []
    for owner, person in enumerate(people, start=1):
        for shape in _body_shapes(rng, person):
            canvas.shape(shape, 0)
        head = _head_shapes(rng, person)
        for shape in head:
            canvas.shape(shape, owner)
        heads.append((person, head))
    _foreground(rng, canvas, width, height)

    owners = np.asarray(canvas.owner)
    objects = []
    for owner, (person, shapes) in enumerate(heads, start=1):
        x0, y0, x1, y1 = _shapes_bounds(shapes)
        origin = (math.floor(x0) - 2, math.floor(y0) - 2)
        local = (math.ceil(x1) - origin[0] + 3, math.ceil(y1) - origin[1] + 3)
        total = _shapes_mask_area(shapes, origin, local)
        cx0, cy0 = max(origin[0], 0), max(origin[1], 0)
        cx1, cy1 = min(origin[0] + local[0], width), min(origin[1] + local[1], height)
        if total == 0 or cx0 >= cx1 or cy0 >= cy1:
            continue
        region = owners[cy0:cy1, cx0:cx1] == owner
        visible = int(np.count_nonzero(region))
        if visible < MIN_VISIBLE_FRACTION * total:
            continue
        rows = np.flatnonzero(region.any(axis=1))
        cols = np.flatnonzero(region.any(axis=0))
        left, right = cx0 + int(cols[0]), cx0 + int(cols[-1])
        top, bottom = cy0 + int(rows[0]), cy0 + int(rows[-1])
        if right - left + 1 < MIN_BOX_PIXELS or bottom - top + 1 < MIN_BOX_PIXELS:
            continue
        objects.append(
            SceneObject(
                name=HELMET if person.helmet else HEAD,
                box=(left + 1, top + 1, right + 1, bottom + 1),
                visible_fraction=visible / total,
                truncated=x0 < 0 or y0 < 0 or x1 > width or y1 > height,
            )
        )
    return Scene(image=_finish(rng, canvas.image), objects=objects)


def _finish(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Camera effects: slight blur, exposure and contrast, sensor noise."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.0))))
    pixels = np.asarray(image, np.float32)
    gain = float(rng.uniform(0.8, 1.15))
    bias = float(rng.uniform(-20, 20))
    mean = pixels.mean()
    pixels = (pixels - mean) * float(rng.uniform(0.85, 1.15)) + mean * gain + bias
    sigma = float(rng.uniform(1.0, 6.0))
    pixels += rng.standard_normal((*pixels.shape[:2], 1), dtype=np.float32) * sigma
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------
# Dataset


def synthesize(
    out: Path | str,
    synth: SynthConfig,
    split: SplitConfig,
    classes: Sequence[str],
    *,
    force: bool = False,
) -> SynthReport:
    """Render ``synth.num_images`` scenes as a VOC dataset (JPEG + XML + seeded splits).

    Args:
        out: Output folder; must be new or empty unless ``force``. Built next to it and renamed
            into place, so a failure leaves it untouched.
        synth: Scene parameters and ``seed`` (``data.synth``).
        split: Train/val/test fractions and their seed (``data.split``).
        classes: ``model.classes``; must contain ``helmet`` and ``head``.
        force: Replace a non-empty ``out``.

    Returns:
        Counts and the content hash. Boxes in the XML are VOC pixel boxes (1-based inclusive);
        :func:`ppe.data.voc.load_split` gives them as ``[xmin, ymin, xmax, ymax]`` in [0, 1].

    Raises:
        DataError: ``classes`` lacks ``helmet`` or ``head``, or ``out`` is not empty.
    """
    out = Path(out)
    missing = [name for name in (HELMET, HEAD) if name not in classes]
    if missing:
        raise DataError(
            f"synthetic scenes draw the classes {HELMET!r} and {HEAD!r}, but model.classes is "
            f"{list(classes)} (missing {', '.join(missing)}); add them to model.classes"
        )
    started = time.perf_counter()
    digits = len(str(synth.num_images - 1))
    counts: Counter[str] = Counter()
    ids: list[str] = []
    with voc.staged_output(out, force) as staging:
        images_dir = staging / voc.IMAGES_DIR
        images_dir.mkdir(parents=True)
        for index in range(synth.num_images):
            rng = np.random.default_rng([synth.seed, index])
            scene = render_scene(rng, synth)
            while not scene.objects:
                scene = render_scene(rng, synth)
            image_id = f"synth_{index:0{digits}d}"
            filename = f"{image_id}.jpg"
            scene.image.save(images_dir / filename, "JPEG", quality=JPEG_QUALITY)
            annotation = voc.VocAnnotation(
                filename=filename,
                width=synth.width,
                height=synth.height,
                depth=3,
                objects=tuple(
                    voc.VocObject(obj.name, *obj.box, difficult=False, truncated=obj.truncated)
                    for obj in scene.objects
                ),
                folder=voc.IMAGES_DIR,
            )
            voc.write_annotation(annotation, staging / voc.ANNOTATIONS_DIR / f"{image_id}.xml")
            counts.update(obj.name for obj in scene.objects)
            ids.append(image_id)
        fractions = {"train": split.train, "val": split.val, "test": split.test}
        assignment = voc.split_ids(ids, fractions, split.seed)
        for split_name, split_members in assignment.items():
            voc.write_split(staging, split_name, split_members)
        digest = voc.dataset_hash(staging)
    report = SynthReport(
        out=out,
        images_per_split={name: len(members) for name, members in assignment.items()},
        objects_per_class={name: counts.get(name, 0) for name in (HELMET, HEAD)},
        hash=digest,
        seconds=time.perf_counter() - started,
    )
    logger.info("synthesised %s: %s", out, report.line())
    return report
