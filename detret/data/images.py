"""Reading photos the way every stage needs them, or saying exactly why not.

Real catalogues hold grayscale, CMYK, 16-bit, palette and alpha PNGs, EXIF-rotated
JPEGs, truncated downloads and HTML error pages saved as ``.jpg``. Every stage
reads photos through :func:`read_rgb` (a file) or :func:`decode_rgb` (bytes, an
upload), which return an upright 8-bit RGB array or raise :class:`PhotoError`
naming the file and the problem, so a stage can skip the photo, record why, and
go on.

What a photo may be, checked from its header before any pixel is decoded:

- one of :data:`PHOTO_FORMATS` (what a shop or street photo can be). Pillow is told
  to try only these parsers: an EPS named ``photo.jpg`` never reaches Ghostscript,
  a DDS or PSD is refused as "not a photo";
- at most ``max_pixels`` pixels (the service's cap) and Pillow's own bomb limit;
- at least :data:`MIN_SIDE_PX` on its short side and at most :data:`MAX_ASPECT`
  times longer than wide (or the converse): the detector resizes the short side
  to its input size with the long side capped, so a 22000 x 8 photo would reach
  it 0 px high.

:func:`decode_reduced` (the service) reduces the photo right after decoding to
at most ``max_side_px`` a side (JPEG's draft mode decodes it at 1/2, 1/4 or 1/8
scale directly), before any mode conversion, so a small upload of a huge image
never holds more than one decoded copy of it; 16- and 32-bit images are scaled
to 8 bits with integer arithmetic (no float64 copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, List, Optional, Tuple, TypeVar, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

MIN_SIDE_PX = 8    # smaller photos cannot be cropped or embedded meaningfully
MAX_ASPECT = 20.0  # long side / short side: a belt shot flat is 8:1 at most; 20:1 still reaches the detector
                   # with its short side over 60 px at the paper's 1333 px cap
# Pillow's format names of the photos detret reads (MPO: the multi-picture JPEG some phones write).
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMATS_TEXT = "JPEG, PNG, WebP, GIF, BMP or TIFF"


def _formats() -> Tuple[str, ...]:
    """:data:`PHOTO_FORMATS` this Pillow registers (older ones open MPO apart, newer ones through JPEG)."""
    Image.init()
    return tuple(f for f in PHOTO_FORMATS if f in Image.OPEN)


class PhotoError(InputError):
    """A photo that cannot be used: `path` and `reason` say which and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    """A decoded photo: ``rgb`` [H', W', 3] uint8, upright, reduced to at most ``max_side_px`` a side; ``size_wh``
    the upright photo's own size (what boxes given by a client refer to)."""

    rgb: np.ndarray
    size_wh: Tuple[int, int]

    @property
    def scale_xy(self) -> Tuple[float, float]:
        """(reduced width / width, reduced height / height): 1.0 when the photo was not reduced."""
        return self.rgb.shape[1] / self.size_wh[0], self.rgb.shape[0] / self.size_wh[1]


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16- or 32-bit grayscale scaled to 8 bits by the actual range of the format: round(v / peak * 255),
    computed exactly in integers (the float formula has no ties, so both agree on every value)."""
    arr = np.asarray(img)
    peak = 65535 if img.mode.startswith("I;16") or int(arr.max(initial=0)) > 255 else 255
    wide = arr.astype(np.int64)
    out = (2 * 255 * wide + peak) // (2 * peak)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = _to_8bit_gray(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as shop photos on white backgrounds.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_rgb(path: Path) -> np.ndarray:
    """The photo as [H, W, 3] uint8 RGB, upright (EXIF orientation applied).

    Raises PhotoError for a missing file, a file that is not a photo, a truncated or corrupt
    image, or one whose size the models cannot read (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise PhotoError(path, "missing file")
    return decode_rgb(path, path)


Item = TypeVar("Item")


def first_readable(items: Iterable[Item], n: int, read: Callable[[Item], np.ndarray]) -> List[np.ndarray]:
    """``read(item)`` of the first ``n`` items it can read; an item whose photo raises :class:`PhotoError` is passed
    over (the calibration photos of the exported engines)."""
    out: List[np.ndarray] = []
    for item in items:
        if len(out) >= n:
            break
        try:
            out.append(read(item))
        except PhotoError:
            continue
    return out


def check_size(size_wh: Tuple[int, int], name: Union[Path, str], max_pixels: Optional[int] = None) -> None:
    """Refuse (PhotoError) a photo size the models cannot read or the caller does not accept."""
    w, h = size_wh
    limits = [p for p in (max_pixels, Image.MAX_IMAGE_PIXELS) if p is not None]
    limit = min(limits) if limits else None
    if limit is not None and w * h > limit:
        raise PhotoError(Path(name), f"too many pixels ({w}x{h}; at most {limit:,} pixels)")
    if min(w, h) < MIN_SIDE_PX:
        raise PhotoError(Path(name), f"too small ({w}x{h} px, need {MIN_SIDE_PX} px a side)")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise PhotoError(Path(name), f"too elongated ({w}x{h} px; the long side may be at most {MAX_ASPECT:g} "
                                     "times the short side)")


def _open_checked(source: Union[Path, BinaryIO], name: Union[Path, str], max_pixels: Optional[int]) -> Image.Image:
    try:
        img = Image.open(source, formats=_formats())
    except UnidentifiedImageError:
        raise PhotoError(Path(name), f"not an image detret reads (a {FORMATS_TEXT} photo is needed)") from None
    except Image.DecompressionBombError as exc:
        raise PhotoError(Path(name), f"too many pixels ({exc})") from None
    check_size(img.size, name, max_pixels)
    return img


def decode_reduced(source: Union[Path, BinaryIO], name: Union[Path, str], *, max_pixels: Optional[int] = None,
                   max_side_px: Optional[int] = None) -> Decoded:
    """The photo decoded, upright, reduced to at most ``max_side_px`` a side (None: full size); ``name`` is
    what errors call it. ``max_pixels``: refuse, from the header and before decoding, a photo with more
    pixels (a small upload that decodes to a huge image); Pillow's own bomb limit applies as well."""
    img = None
    try:
        img = _open_checked(source, name, max_pixels)
        header_wh = img.size
        if max_side_px is not None and max(img.size) > max_side_px:
            # draft (JPEG) + reduce + bilinear, before load's full-size copy is converted anywhere
            img.thumbnail((max_side_px, max_side_px), Image.Resampling.BILINEAR, reducing_gap=2.0)
        img.load()
        upright = ImageOps.exif_transpose(img)
        rgb = _to_rgb(upright)
        size_wh = _upright(header_wh, img)
    except PhotoError:
        raise
    except Exception as exc:  # noqa: BLE001 -- Pillow's parsers raise many types on malformed bytes (OSError,
        # SyntaxError, ValueError, struct.error, EOFError, NotImplementedError, ...): an unreadable photo either way
        raise PhotoError(Path(name), f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    finally:
        if img is not None:
            img.close()
    arr = np.array(rgb, dtype=np.uint8)  # a writable copy (Pillow's buffer is read-only)
    if min(arr.shape[:2]) < 1:
        raise PhotoError(Path(name), f"reduced to nothing ({arr.shape[1]}x{arr.shape[0]} px)")
    return Decoded(arr, size_wh)


def _upright(size_wh: Tuple[int, int], img: Image.Image) -> Tuple[int, int]:
    """``size_wh`` (the header's width, height) turned upright by the photo's EXIF orientation."""
    w, h = size_wh
    return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)


def decode_rgb(source: Union[Path, BinaryIO], name: Union[Path, str], max_pixels: Optional[int] = None) -> np.ndarray:
    """:func:`read_rgb` of a file or of bytes (an upload), at full size; ``name`` is what errors call it."""
    return decode_reduced(source, name, max_pixels=max_pixels).rgb


def photo_size(path: Path) -> Tuple[int, int]:
    """(width, height) of the upright photo from its header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise PhotoError(path, "missing file")
    try:
        with Image.open(path, formats=_formats()) as img:
            return _upright(img.size, img)
    except UnidentifiedImageError:
        raise PhotoError(path, f"not an image detret reads (a {FORMATS_TEXT} photo is needed)") from None
    except Exception as exc:  # noqa: BLE001 -- as in decode_reduced: any parser failure is an unreadable header
        raise PhotoError(path, f"unreadable image header ({type(exc).__name__}: {exc})") from None
