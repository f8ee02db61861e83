"""Garments of the synthetic dataset: a shape per ModaNet label, a look per product.

A garment is drawn in its own frame, the unit square (x right, y down) that is
later mapped onto a body region or a shop photo. Its *shape* (polygons in that
frame) depends on the ModaNet label and a few shape parameters; its *look*
(colours, pattern, trim, badge) is what tells one product from another of the
same category. Products of a category share the shape family and differ only by
such fine detail, as in Exact Street2Shop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from ...errors import UnknownNameError

# RGB palette the looks draw from; neighbours are deliberately close in hue so
# that some products differ by little more than a shade.
PALETTE_RGB: Tuple[Tuple[int, int, int], ...] = (
    (200, 30, 40), (170, 20, 60), (230, 110, 40), (240, 190, 40), (120, 160, 50),
    (40, 120, 70), (30, 130, 140), (40, 80, 170), (25, 40, 100), (110, 60, 160),
    (200, 120, 170), (140, 90, 50), (90, 60, 40), (200, 180, 140), (235, 235, 225),
    (130, 130, 135), (40, 40, 45), (170, 200, 230),
)
PATTERNS = ("plain", "stripes", "checks", "dots")
BADGES = ("none", "circle", "square", "triangle")

# Street2Shop category of a catalogue product -> ModaNet label of its shape.
PRODUCT_LABEL: Dict[str, str] = {
    "bags": "bag", "belts": "belt", "dresses": "dress", "eyewear": "sunglasses",
    "footwear": "footwear", "hats": "headwear", "leggings": "pants", "outerwear": "outer",
    "pants": "pants", "skirts": "skirt", "tops": "top",
}

Polygon = np.ndarray  # [K, 2] float64, (x, y) in the unit frame


@dataclass(frozen=True)
class Look:
    """What a product looks like: colours are RGB, sizes are fractions of the garment frame."""

    base_rgb: Tuple[int, int, int]
    second_rgb: Tuple[int, int, int]
    trim_rgb: Tuple[int, int, int]
    pattern: str            # one of PATTERNS
    pattern_period: float   # stripe/check/dot spacing, fraction of the frame's larger side
    pattern_angle_deg: float
    trim_width: float       # outline thickness, fraction of the frame's larger side (0: none)
    badge: str              # one of BADGES
    badge_xy: Tuple[float, float]  # badge centre in the unit frame


@dataclass(frozen=True)
class GarmentSpec:
    """One garment: its ModaNet label, shape parameters in [0, 1], and look."""

    label: str
    shape: Tuple[float, float]  # two shape parameters, meaning depends on the label
    look: Look
    boots: bool = False         # footwear drawn as boots (ModaNet label "boots")

    @property
    def modanet_label(self) -> str:
        return "boots" if self.boots else self.label


def sample_look(rng: np.random.Generator) -> Look:
    idx = rng.choice(len(PALETTE_RGB), size=3, replace=False)
    pattern = str(rng.choice(PATTERNS, p=[0.4, 0.25, 0.15, 0.2]))
    return Look(
        base_rgb=PALETTE_RGB[idx[0]],
        second_rgb=PALETTE_RGB[idx[1]],
        trim_rgb=PALETTE_RGB[idx[2]],
        pattern=pattern,
        pattern_period=float(rng.uniform(0.08, 0.22)),
        pattern_angle_deg=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        trim_width=float(rng.choice([0.0, 0.025, 0.045])),
        badge=str(rng.choice(BADGES)),
        badge_xy=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.3, 0.6))),
    )


def sample_garment(label: str, rng: np.random.Generator, *, product_category: str = "") -> GarmentSpec:
    """A random garment of a ModaNet label (leggings are narrow pants)."""
    shape = (float(rng.uniform()), float(rng.uniform()))
    if product_category == "leggings":
        shape = (shape[0] * 0.25, shape[1])  # narrow legs
    elif product_category == "pants":
        shape = (0.45 + shape[0] * 0.55, shape[1])
    boots = label == "boots"
    return GarmentSpec(label="footwear" if boots else label, shape=shape, look=sample_look(rng), boots=boots)


def _poly(points) -> Polygon:
    return np.asarray(points, dtype=np.float64)


def garment_polygons(spec: GarmentSpec) -> List[Polygon]:
    """Polygons of the garment in its unit frame (several for paired items: shoes, lenses)."""
    a, b = spec.shape
    label = spec.label
    if label == "top":
        sleeve = 0.25 + 0.6 * a          # sleeve length
        neck = 0.12 + 0.1 * b
        return [_poly([
            (0.5 - neck, 0.0), (0.25, 0.02), (0.0, 0.1 + 0.1 * sleeve), (0.02 + 0.05 * sleeve, 0.1 + 0.6 * sleeve),
            (0.2, 0.3 + 0.4 * sleeve * 0.5), (0.22, 1.0), (0.78, 1.0), (0.8, 0.3 + 0.2 * sleeve),
            (0.98 - 0.05 * sleeve, 0.1 + 0.6 * sleeve), (1.0, 0.1 + 0.1 * sleeve), (0.75, 0.02), (0.5 + neck, 0.0),
            (0.5, 0.12 + 0.1 * b),
        ])]
    if label == "outer":
        gap = 0.04 + 0.06 * b            # open front shows what is underneath
        length = 0.85 + 0.15 * a
        left = _poly([(0.5 - gap, 0.08), (0.3, 0.0), (0.0, 0.12), (0.0, 0.85), (0.13, 0.85), (0.18, 0.35),
                      (0.18, length), (0.5 - gap, length)])
        right = left.copy()
        right[:, 0] = 1.0 - right[:, 0]
        return [left, right[::-1]]
    if label == "dress":
        flare = 0.05 + 0.2 * a
        strap = 0.3 + 0.1 * b
        return [_poly([(strap, 0.0), (0.5, 0.08), (1 - strap, 0.0), (0.78, 0.12), (0.72, 0.38), (0.66, 0.42),
                       (0.8 + flare, 1.0), (0.2 - flare, 1.0), (0.34, 0.42), (0.28, 0.38), (0.22, 0.12)])]
    if label == "skirt":
        flare = 0.1 * a
        return [_poly([(0.2, 0.0), (0.8, 0.0), (0.9 + flare, 1.0), (0.5, 0.97 - 0.05 * b), (0.1 - flare, 1.0)])]
    if label == "pants":
        leg = 0.1 + 0.1 * a              # half width of a leg at the ankle (<= 0.2: legs never cross)
        return [_poly([(0.12, 0.0), (0.88, 0.0), (0.95, 1.0), (0.95 - 2 * leg, 1.0), (0.5, 0.22),
                       (0.05 + 2 * leg, 1.0), (0.05, 1.0)])]
    if label == "shorts":
        return [_poly([(0.1, 0.0), (0.9, 0.0), (1.0, 0.9 + 0.1 * a), (0.55, 1.0), (0.5, 0.45),
                       (0.45, 1.0), (0.0, 0.9 + 0.1 * a)])]
    if label == "belt":
        return [_poly([(0.0, 0.2), (1.0, 0.2 + 0.1 * (b - 0.5)), (1.0, 0.8 + 0.1 * (b - 0.5)), (0.0, 0.8)])]
    if label == "bag":
        top = 0.35 + 0.15 * a
        return [_poly([(0.15 - 0.1 * b, top), (0.85 + 0.1 * b, top), (1.0, 1.0), (0.0, 1.0)]),
                _poly([(0.3, top), (0.35, 0.0), (0.65, 0.0), (0.7, top), (0.62, top), (0.58, 0.1),
                       (0.42, 0.1), (0.38, top)])]
    if label == "headwear":
        crown = 0.15 + 0.1 * b           # half width of the crown
        brim = 0.05 + 0.2 * a            # how far the brim reaches past the crown (stays in the frame)
        return [_poly([(0.5 - crown, 0.05), (0.5 + crown, 0.05), (0.5 + crown + 0.03, 0.7),
                       (0.5 + crown + brim, 0.72), (0.5 + crown + brim, 1.0),
                       (0.5 - crown - brim, 1.0), (0.5 - crown - brim, 0.72), (0.5 - crown - 0.03, 0.7)])]
    if label == "sunglasses":
        lens = 0.35 + 0.1 * a
        ellipses = []
        for cx in (0.5 - 0.06 - lens / 2, 0.5 + 0.06 + lens / 2):
            t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            ellipses.append(np.stack([cx + lens / 2 * np.cos(t), 0.5 + (0.35 + 0.1 * b) * np.sin(t)], 1))
        bridge = _poly([(0.3, 0.3), (0.7, 0.3), (0.7, 0.45), (0.3, 0.45)])
        # One outline: lenses and bridge joined (ModaNet annotates a pair as one item).
        return [_merge_hull(ellipses + [bridge])]
    if label == "scarf/tie":
        w = 0.15 + 0.2 * a
        return [_poly([(0.5 - w, 0.0), (0.5 + w, 0.0), (0.5 + w * 0.8, 0.85), (0.5, 1.0), (0.5 - w * 0.8, 0.85)])]
    if label == "footwear":
        # One shoe in the unit frame; scenes place the pair as two instances.
        if spec.boots:
            return [_poly([(0.2, 0.0), (0.6, 0.0), (0.62, 0.6), (1.0, 0.78), (1.0, 1.0), (0.15, 1.0)])]
        heel = 0.2 * b
        return [_poly([(0.0, 0.45 - heel), (0.45, 0.3), (0.8, 0.5), (1.0, 0.75), (1.0, 1.0), (0.1, 1.0),
                       (0.0, 1.0 - heel)])]
    raise UnknownNameError(f"no synthetic shape for ModaNet label {label!r}")


def _merge_hull(polys: List[Polygon]) -> Polygon:
    pts = np.concatenate(polys).astype(np.float32)
    return cv2.convexHull(pts)[:, 0, :].astype(np.float64)


def render_look(look: Look, height_px: int, width_px: int) -> np.ndarray:
    """The product's fabric over its whole frame: [H, W, 3] uint8 RGB."""
    h, w = height_px, width_px
    side = max(h, w)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = look.base_rgb
    if look.pattern == "plain":
        return img
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.deg2rad(look.pattern_angle_deg)
    period = max(2.0, look.pattern_period * side)
    u = (xx * np.cos(theta) + yy * np.sin(theta)) / period
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) / period
    if look.pattern == "stripes":
        mask = (u % 1.0) < 0.4
    elif look.pattern == "checks":
        mask = ((np.floor(u) + np.floor(v)) % 2) == 0
    else:  # dots
        mask = ((u % 1.0 - 0.5) ** 2 + (v % 1.0 - 0.5) ** 2) < 0.07
    img[mask] = look.second_rgb
    return img


def render_garment(spec: GarmentSpec, height_px: int, width_px: int) -> Tuple[np.ndarray, np.ndarray, List[Polygon]]:
    """Draw a garment filling an H x W frame.

    Returns (rgb [H, W, 3] uint8, mask [H, W] uint8 in {0, 255}, polygons in
    pixel coordinates of that frame).
    """
    h, w = height_px, width_px
    scale = np.array([w - 1, h - 1], np.float64)
    polys_px = [p * scale for p in garment_polygons(spec)]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polys_px], 255, lineType=cv2.LINE_8)
    rgb = render_look(spec.look, h, w)
    side = max(h, w)
    look = spec.look
    if look.badge != "none":
        cx, cy = int(look.badge_xy[0] * w), int(look.badge_xy[1] * h)
        r = max(2, int(0.09 * min(h, w)))
        color = tuple(int(c) for c in look.trim_rgb)
        if look.badge == "circle":
            cv2.circle(rgb, (cx, cy), r, color, -1, cv2.LINE_AA)
        elif look.badge == "square":
            cv2.rectangle(rgb, (cx - r, cy - r), (cx + r, cy + r), color, -1)
        else:
            tri = np.array([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], np.int32)
            cv2.fillPoly(rgb, [tri], color, cv2.LINE_AA)
    if look.trim_width > 0:
        thickness = max(1, int(round(look.trim_width * side)))
        cv2.polylines(rgb, [np.round(p).astype(np.int32) for p in polys_px], True,
                      tuple(int(c) for c in look.trim_rgb), thickness, cv2.LINE_AA)
    # Shading: a soft vertical gradient so a garment is not a flat sticker.
    shade = np.linspace(1.08, 0.85, h, dtype=np.float32)[:, None, None]
    rgb = np.clip(rgb.astype(np.float32) * shade, 0, 255).astype(np.uint8)
    return rgb, mask, polys_px
