"""Photos of the synthetic dataset: shop photos and street photos.

Shop photos show one product large on a plain background (flat lay), or worn
by a mannequin on a plain background with other garments. Street photos show a
person smaller, amid clutter, wearing the product among other garments, each
garment under its own perspective warp, the whole photo under a random colour
cast, gamma, blur and noise: cropping to the right garment matters there, and a
whole-photo descriptor mixes every garment and the background.

Everything is drawn with OpenCV from a numpy Generator, so a seed gives the
same pixels. Coordinates are pixels, (x, y), x right, y down.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from .garments import GarmentSpec, Polygon, render_garment, sample_garment

# Body regions a garment of each label covers, in figure units: the figure is
# 100 wide and 250 high, head at the top, feet at the bottom.
FIGURE_SIZE = (100.0, 250.0)
REGIONS_FIG: Dict[str, Tuple[float, float, float, float]] = {  # x0, y0, x1, y1
    "headwear": (30, 0, 70, 16),
    "sunglasses": (38, 14, 62, 22),
    "scarf/tie": (42, 34, 58, 95),
    "top": (22, 38, 78, 112),
    "outer": (20, 36, 80, 135),
    "dress": (24, 38, 76, 178),
    "belt": (31, 104, 69, 112),
    "pants": (31, 106, 69, 236),
    "shorts": (31, 106, 69, 150),
    "skirt": (29, 106, 71, 170),
    "footwear": (26, 228, 49, 246),   # left shoe; the right one is mirrored
    "boots": (28, 200, 49, 246),
    "bag": (76, 95, 100, 140),
}
# Drawing order: later garments cover earlier ones.
LAYER_ORDER = ("pants", "shorts", "skirt", "top", "dress", "footwear", "boots", "belt",
               "outer", "scarf/tie", "bag", "sunglasses", "headwear")
SKIN_RGB = ((236, 196, 164), (205, 150, 115), (160, 110, 80), (110, 75, 55))
# Garments never worn together unless both are asked for (then: never both as products of one street
# photo): a belt on a dress, which nobody wears, and a belt under an open outer garment, which hides all
# of it but the strip in its opening while its box (drawn around the whole outline) spans the coat.
NOT_WORN_TOGETHER = (frozenset({"belt", "dress"}), frozenset({"belt", "outer"}))


def excluded_by(label: str) -> Set[str]:
    """The labels that NOT_WORN_TOGETHER keeps from being worn with `label`."""
    return {other for pair in NOT_WORN_TOGETHER if label in pair for other in pair - {label}}


@dataclass
class Instance:
    """A garment in a photo: its ModaNet label, outline polygons and box in photo pixels."""

    label: str
    polygons: List[Polygon]
    box_xyxy: Tuple[float, float, float, float]
    tag: Optional[str] = None  # caller's name for it (e.g. the product id)


def _homography(src_quad: np.ndarray, dst_quad: np.ndarray) -> np.ndarray:
    return cv2.getPerspectiveTransform(src_quad.astype(np.float32), dst_quad.astype(np.float32))


def _quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def paste_garment(
    canvas: np.ndarray,
    spec: GarmentSpec,
    dst_quad: np.ndarray,
    *,
    mirror: bool = False,
    tag: Optional[str] = None,
) -> Optional[Instance]:
    """Draw `spec` into `canvas` [H, W, 3] uint8 so that its frame lands on `dst_quad`.

    `dst_quad` [4, 2]: where the frame's corners (top-left, top-right,
    bottom-right, bottom-left) go. Returns the instance, or None when nothing
    of it lies inside the canvas.
    """
    h_img, w_img = canvas.shape[:2]
    x_span = np.ptp(dst_quad[:, 0])
    y_span = np.ptp(dst_quad[:, 1])
    # Render at about the destination resolution (x1.5 for clean edges after warping).
    fw = int(np.clip(x_span * 1.5, 8, 400))
    fh = int(np.clip(y_span * 1.5, 8, 400))
    rgb, mask, polys = render_garment(spec, fh, fw)
    src = _quad(0, 0, fw - 1, fh - 1)
    if mirror:
        src = src[[1, 0, 3, 2]]
    hmat = _homography(src, dst_quad)
    warped = cv2.warpPerspective(rgb, hmat, (w_img, h_img), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.warpPerspective(mask, hmat, (w_img, h_img), flags=cv2.INTER_LINEAR, borderValue=0)
    if not alpha.any():
        return None
    a = alpha[..., None].astype(np.float32) / 255.0
    canvas[:] = (canvas * (1.0 - a) + warped * a + 0.5).astype(np.uint8)
    polys_img = [cv2.perspectiveTransform(p[None].astype(np.float64), hmat)[0] for p in polys]
    clipped = [np.clip(p, [0, 0], [w_img - 1, h_img - 1]) for p in polys_img]
    pts = np.concatenate(clipped)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return Instance(spec.modanet_label, clipped, (float(x0), float(y0), float(x1), float(y1)), tag)


# ---------------------------------------------------------------- backgrounds

def plain_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    tone = rng.uniform(215, 250)
    tint = rng.uniform(-6, 6, size=3)
    grad = np.linspace(0, rng.uniform(-15, 5), h)[:, None, None]
    img = np.clip(tone + tint[None, None, :] + grad, 0, 255)
    return np.broadcast_to(img, (h, w, 3)).astype(np.uint8).copy()


def cluttered_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A street: sky/wall gradient, blocks, poles, blobs, texture noise."""
    top = rng.uniform(60, 220, 3)
    bottom = rng.uniform(40, 180, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
    img = img.astype(np.uint8)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        bw, bh = int(rng.integers(w // 10, w // 2)), int(rng.integers(h // 10, h // 2))
        color = tuple(int(c) for c in rng.integers(20, 235, 3))
        if rng.uniform() < 0.6:
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), color, -1)
        else:
            cv2.ellipse(img, (x0, y0), (bw // 2, bh // 3), float(rng.uniform(0, 180)), 0, 360, color, -1)
    for _ in range(int(rng.integers(1, 4))):
        x = int(rng.integers(0, w))
        cv2.line(img, (x, 0), (x + int(rng.integers(-20, 20)), h), tuple(int(c) for c in rng.integers(20, 200, 3)),
                 int(rng.integers(2, 7)))
    noise = rng.normal(0, 8, (h, w, 1))
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- figures

def draw_body(canvas: np.ndarray, fig_to_img: np.ndarray, rng: np.random.Generator) -> None:
    """Head, neck, arms and legs of a figure (garments are drawn over them)."""
    skin = tuple(int(c) for c in SKIN_RGB[int(rng.integers(len(SKIN_RGB)))])
    hair = tuple(int(c) for c in rng.integers(10, 90, 3))

    def pt(x, y):
        p = cv2.perspectiveTransform(np.array([[[x, y]]], np.float64), fig_to_img)[0, 0]
        return int(round(p[0])), int(round(p[1]))

    scale = abs(np.linalg.det(fig_to_img[:2, :2])) ** 0.5
    limb = max(2, int(round(9 * scale)))
    head_r = max(3, int(round(14 * scale)))
    for (xa, ya), (xb, yb) in (((28, 44), (14, 120)), ((72, 44), (86, 120)),   # arms
                               ((40, 110), (38, 232)), ((60, 110), (62, 232)),  # legs
                               ((50, 28), (50, 44))):                           # neck
        cv2.line(canvas, pt(xa, ya), pt(xb, yb), skin, limb, cv2.LINE_AA)
    cv2.circle(canvas, pt(50, 18), head_r, skin, -1, cv2.LINE_AA)
    cx, cy = pt(50, 12)
    cv2.ellipse(canvas, (cx, cy), (head_r, max(2, head_r * 2 // 3)), 0, 180, 360, hair, -1, cv2.LINE_AA)


def sample_outfit(rng: np.random.Generator, required: Sequence[str] = ()) -> List[str]:
    """ModaNet labels of a plausible outfit that includes the `required` labels."""
    req = set(required)
    labels: List[str] = []
    if "dress" in req or (not req & {"top", "outer", "pants", "shorts", "skirt"} and rng.uniform() < 0.3):
        labels.append("dress")
    else:
        # An open outer garment covers most of a top: never add one over a required top, nor over what
        # it hides (a catalogue photo shows its product).
        if "outer" in req or (not req & ({"top"} | excluded_by("outer")) and rng.uniform() < 0.2):
            labels.append("outer")
        if "top" in req or "outer" not in labels:
            labels.append("top")
        bottoms = [b for b in ("pants", "shorts", "skirt") if b in req]
        labels.append(bottoms[0] if bottoms else str(rng.choice(["pants", "shorts", "skirt"], p=[0.5, 0.2, 0.3])))
    shoes = [s for s in ("footwear", "boots") if s in req]
    labels.append(shoes[0] if shoes else str(rng.choice(["footwear", "boots"], p=[0.75, 0.25])))
    for extra, p in (("bag", 0.35), ("belt", 0.2), ("headwear", 0.25), ("sunglasses", 0.25), ("scarf/tie", 0.12)):
        if extra in req or rng.uniform() < p:
            if extra not in req and excluded_by(extra) & set(labels):
                continue
            labels.append(extra)
    return labels


def dress_figure(
    canvas: np.ndarray,
    fig_to_img: np.ndarray,
    garments: Dict[str, Tuple[GarmentSpec, Optional[str]]],
    rng: np.random.Generator,
    *,
    warp: float = 0.0,
) -> List[Instance]:
    """Draw a figure and its garments; `garments` maps a ModaNet label to (spec, tag).

    `warp` jitters each garment's corners by up to that fraction of its size
    (perspective and fit changes of a worn, photographed garment).
    """
    draw_body(canvas, fig_to_img, rng)
    instances: List[Instance] = []
    for label in LAYER_ORDER:
        if label not in garments:
            continue
        spec, tag = garments[label]
        x0, y0, x1, y1 = REGIONS_FIG[label]
        pieces = [(x0, x1, False)]
        if label in ("footwear", "boots"):
            pieces.append((100 - x1, 100 - x0, True))
        for px0, px1, mirror in pieces:
            quad = _quad(px0, y0, px1, y1)
            if warp > 0:
                size = np.array([px1 - px0, y1 - y0])
                quad = quad + rng.uniform(-warp, warp, (4, 2)) * size
            dst = cv2.perspectiveTransform(quad[None], fig_to_img)[0]
            inst = paste_garment(canvas, spec, dst, mirror=mirror, tag=tag)
            if inst is not None:
                instances.append(inst)
    return instances


def figure_transform(x0: float, y0: float, height_px: float, tilt_deg: float = 0.0) -> np.ndarray:
    """3x3 map from figure units to photo pixels: top-left of the figure at (x0, y0)."""
    s = height_px / FIGURE_SIZE[1]
    c, si = np.cos(np.deg2rad(tilt_deg)), np.sin(np.deg2rad(tilt_deg))
    return np.array([[s * c, -s * si, x0], [s * si, s * c, y0], [0, 0, 1]], np.float64)


# ---------------------------------------------------------------- photo effects

def photometric(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Colour cast, gamma, blur and sensor noise; `strength` 0 (none) to 1 (street)."""
    out = img.astype(np.float32) / 255.0
    gain = 1.0 + rng.uniform(-0.25, 0.25, 3) * strength
    gamma = float(np.exp(rng.uniform(-0.35, 0.35) * strength))
    out = np.clip(out * gain[None, None, :], 0, 1) ** gamma
    if strength > 0.5 and rng.uniform() < 0.6:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    out = out + rng.normal(0, 0.02 * strength, out.shape)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def rotate_photo(img: np.ndarray, instances: List[Instance], angle_deg: float, border_rgb) -> np.ndarray:
    """Rotate a whole photo about its centre, carrying the instances' polygons along."""
    h, w = img.shape[:2]
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    out = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=tuple(int(c) for c in border_rgb))
    for inst in instances:
        polys = [np.clip(cv2.transform(p[None], mat)[0], [0, 0], [w - 1, h - 1]) for p in inst.polygons]
        pts = np.concatenate(polys)
        inst.polygons = polys
        inst.box_xyxy = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
    return out


# ---------------------------------------------------------------- photos

def shop_photo(
    product: GarmentSpec, rng: np.random.Generator, *, size_hw: Tuple[int, int], on_figure: bool, tag: str
) -> Tuple[np.ndarray, List[Instance]]:
    """A catalogue photo: the product large on a plain background, flat or worn."""
    h, w = size_hw
    img = plain_background(h, w, rng)
    if not on_figure:
        x0, y0, x1, y1 = REGIONS_FIG[product.modanet_label]
        aspect = (x1 - x0) / (y1 - y0)  # width / height of the garment's frame
        fill = rng.uniform(0.7, 0.9)
        gw, gh = (w * fill, w * fill / aspect) if aspect > w / h else (h * fill * aspect, h * fill)
        cx, cy = w / 2 + rng.uniform(-0.05, 0.05) * w, h / 2 + rng.uniform(-0.05, 0.05) * h
        quad = _quad(cx - gw / 2, cy - gh / 2, cx + gw / 2, cy + gh / 2)
        instances = []
        if product.label == "footwear":  # a pair, side by side
            half = gw / 2
            for k, mirror in ((0, False), (1, True)):
                q = _quad(cx - gw / 2 + k * half, cy - gh / 4, cx - gw / 2 + (k + 1) * half, cy + gh / 4)
                inst = paste_garment(img, product, q, mirror=mirror, tag=tag)
                if inst is not None:
                    instances.append(inst)
        else:
            inst = paste_garment(img, product, quad, tag=tag)
            instances = [inst] if inst is not None else []
        img = rotate_photo(img, instances, rng.uniform(-6, 6), img[0, 0])
        return photometric(img, rng, 0.15), instances
    # On a mannequin: framed so that the product's body region is well inside the photo.
    x0, y0, x1, y1 = REGIONS_FIG[product.modanet_label]
    region_h = y1 - y0
    fig_h = float(np.clip(h * 0.6 * FIGURE_SIZE[1] / max(region_h, 60), h * 0.9, h * 2.2))
    s = fig_h / FIGURE_SIZE[1]
    centre_x, centre_y = (x0 + x1) / 2 * s, (y0 + y1) / 2 * s
    mat = figure_transform(w / 2 - centre_x + rng.uniform(-0.05, 0.05) * w, h / 2 - centre_y, fig_h)
    labels = sample_outfit(rng, required=[product.modanet_label])
    garments = {lab: (sample_garment(lab, rng), None) for lab in labels if lab != product.modanet_label}
    garments[product.modanet_label] = (product, tag)
    instances = dress_figure(img, mat, garments, rng, warp=0.02)
    return photometric(img, rng, 0.15), instances


def street_photo(
    wearing: Dict[str, Tuple[GarmentSpec, Optional[str]]],
    rng: np.random.Generator,
    *,
    size_hw: Tuple[int, int],
) -> Tuple[np.ndarray, List[Instance]]:
    """A street photo of a person wearing `wearing` (label -> (spec, tag)) plus random garments."""
    h, w = size_hw
    img = cluttered_background(h, w, rng)
    labels = sample_outfit(rng, required=list(wearing))
    garments = dict(wearing)
    for lab in labels:
        if lab not in garments:
            garments[lab] = (sample_garment(lab, rng), None)
    # The whole figure stays in the photo, so every garment it wears is visible.
    fig_h = h * rng.uniform(0.6, 0.97)
    s = fig_h / FIGURE_SIZE[1]
    x0 = rng.uniform(0.02 * w, max(0.02 * w + 1, 0.98 * w - FIGURE_SIZE[0] * s))
    y0 = rng.uniform(0.01 * h, max(0.01 * h + 1, 0.99 * h - fig_h))
    mat = figure_transform(x0, y0, fig_h, tilt_deg=rng.uniform(-6, 6))
    instances = dress_figure(img, mat, garments, rng, warp=0.08)
    return photometric(img, rng, 1.0), instances
