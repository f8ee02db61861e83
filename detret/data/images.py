"""Reading photos the way every stage needs them, or saying exactly why not.

Real catalogues hold grayscale, CMYK, 16-bit, palette and alpha PNGs, EXIF-rotated
JPEGs, truncated downloads and HTML error pages saved as ``.jpg``. Every stage
reads photos through :func:`read_rgb`, which returns an upright 8-bit RGB array
or raises :class:`PhotoError` naming the file and the problem, so a stage can
skip the photo, record why, and go on.

Pillow does the decoding (it knows EXIF orientation, CMYK and 16-bit modes);
``Image.MAX_IMAGE_PIXELS`` stays at Pillow's default, so a decompression bomb is
an error, not an out-of-memory kill.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

MIN_SIDE_PX = 8  # smaller photos cannot be cropped or embedded meaningfully


class PhotoError(InputError):
    """A photo that cannot be used: `path` and `reason` say which and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by the actual range of the format.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as shop photos on white backgrounds.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_rgb(path: Path) -> np.ndarray:
    """The photo as [H, W, 3] uint8 RGB, upright (EXIF orientation applied).

    Raises PhotoError for a missing file, a file that is not an image, a
    truncated or corrupt image, or one smaller than MIN_SIDE_PX on a side.
    """
    path = Path(path)
    if not path.is_file():
        raise PhotoError(path, "missing file")
    return decode_rgb(path, path)


def decode_rgb(source: Union[Path, BinaryIO], name: Union[Path, str], max_pixels: Optional[int] = None) -> np.ndarray:
    """:func:`read_rgb` of a file or of bytes (an upload); ``name`` is what errors call it.

    ``max_pixels``: refuse, from the header and before decoding, a photo with more pixels
    (a small upload that decodes to a huge image); Pillow's own bomb limit applies as well.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
                    raise PhotoError(Path(name), f"too many pixels ({img.size[0]}x{img.size[1]}; at most "
                                                 f"{max_pixels:,} pixels)")
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except UnidentifiedImageError:
        raise PhotoError(Path(name), "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, PhotoError):
            raise
        raise PhotoError(Path(name), f"corrupt or truncated image ({exc})") from None
    arr = np.array(rgb, dtype=np.uint8)  # a writable copy (Pillow's buffer is read-only)
    if min(arr.shape[:2]) < MIN_SIDE_PX:
        raise PhotoError(Path(name), f"too small ({arr.shape[1]}x{arr.shape[0]} px, need {MIN_SIDE_PX} px a side)")
    return arr


def photo_size(path: Path) -> Tuple[int, int]:
    """(width, height) of the upright photo from its header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise PhotoError(path, "missing file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise PhotoError(path, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(path, f"unreadable image header ({exc})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
