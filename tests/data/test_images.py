"""Photo decoding: every odd format becomes upright 8-bit RGB, every bad file a named error."""
import numpy as np
import pytest
from PIL import Image

from detret.data.images import PhotoError, photo_size, read_rgb


def _gradient(w=40, h=30):
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    return np.broadcast_to(x, (h, w, 3)).copy()


def test_rgb_jpeg_png_roundtrip(tmp_path):
    arr = _gradient()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3) and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, arr)


def test_grayscale_cmyk_16bit_alpha(tmp_path):
    Image.fromarray(np.full((20, 30), 77, np.uint8), mode="L").save(tmp_path / "g.jpg", quality=100)
    g = read_rgb(tmp_path / "g.jpg")
    assert g.shape == (20, 30, 3) and abs(int(g.mean()) - 77) <= 1
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # red in CMYK
    c = read_rgb(tmp_path / "c.jpg")
    assert c.shape == (20, 30, 3) and c[..., 0].mean() > 200 and c[..., 1:].mean() < 60
    Image.fromarray(np.full((20, 30), 65535, np.uint16)).save(tmp_path / "w16.png")
    assert read_rgb(tmp_path / "w16.png").min() == 255
    Image.fromarray(np.full((20, 30), 32768, np.uint16)).save(tmp_path / "m16.png")
    assert abs(int(read_rgb(tmp_path / "m16.png").mean()) - 128) <= 1
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (10, 20, 30, 255)  # left half opaque, right half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    a = read_rgb(tmp_path / "a.png")
    assert (a[:, :15] == (10, 20, 30)).all() and (a[:, 15:] == 255).all()


def test_exif_rotation_applied(tmp_path):
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[:5, :5] = 255  # white mark at the top-left of the stored pixels
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_rgb(tmp_path / "r.jpg")
    assert out.shape == (40, 30, 3)
    assert photo_size(tmp_path / "r.jpg") == (30, 40)
    # rotating clockwise moves the top-left mark to the top-right
    assert out[:5, -5:].mean() > 200 and out[:5, :5].mean() < 50


@pytest.mark.parametrize("name, content, reason", [
    ("t.jpg", None, "corrupt or truncated"),
    ("h.jpg", b"<html>404 Not Found</html>", "not an image"),
    ("e.jpg", b"", "not an image"),
])
def test_bad_files_are_named_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg", quality=90)
        data = (tmp_path / "full.jpg").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(PhotoError, match=reason) as err:
        read_rgb(path)
    assert err.value.path == path and str(path) in str(err.value)


def test_missing_and_tiny(tmp_path):
    with pytest.raises(PhotoError, match="missing file"):
        read_rgb(tmp_path / "nope.jpg")
    with pytest.raises(PhotoError, match="missing file"):
        photo_size(tmp_path / "nope.jpg")
    Image.fromarray(_gradient(4, 3)).save(tmp_path / "tiny.png")
    with pytest.raises(PhotoError, match="too small \\(4x3 px"):
        read_rgb(tmp_path / "tiny.png")


# --- what a photo may be, and what decoding it may cost (issue 26) ---

def _saved(fmt: str, size=(64, 48), mode="RGB", **kw) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new(mode, size, 90).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["EPS", "DDS", "ICO", "TGA", "PCX", "SGI", "PPM", "JPEG2000"])
def test_formats_outside_the_photo_list_are_never_parsed(tmp_path, fmt, monkeypatch):
    """The CLI and the catalogue read with the same allow-list as the service: an EPS named photo.jpg never
    reaches Ghostscript (whose -dSAFER escapes are remote code execution)."""
    from PIL import EpsImagePlugin, Image as PILImage

    PILImage.init()
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript was called"))
    if fmt in PILImage.OPEN:   # its parser fails the test if it is ever called
        _, accept = PILImage.OPEN[fmt]
        monkeypatch.setitem(PILImage.OPEN, fmt, (lambda *a, **k: pytest.fail(f"{fmt} was parsed"), accept))
    path = tmp_path / "photo.jpg"
    try:
        path.write_bytes(_saved(fmt))
    except (KeyError, OSError):
        pytest.skip(f"this Pillow cannot write {fmt}")
    with pytest.raises(PhotoError, match="not an image detret reads"):
        read_rgb(path)
    with pytest.raises(PhotoError, match="not an image detret reads"):
        photo_size(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_photo_formats_are_read(tmp_path, fmt):
    path = tmp_path / f"p.{fmt.lower()}"
    path.write_bytes(_saved(fmt))
    assert read_rgb(path).shape == (48, 64, 3)


def test_extreme_aspect_ratios_are_refused_from_the_header(tmp_path):
    from detret.data.images import MAX_ASPECT

    Image.new("RGB", (22000, 8)).save(tmp_path / "thin.png")
    Image.new("RGB", (10, 10 * int(MAX_ASPECT) + 10)).save(tmp_path / "tall.png")
    Image.new("RGB", (10, 10 * int(MAX_ASPECT))).save(tmp_path / "ok.png")
    for name in ("thin.png", "tall.png"):
        with pytest.raises(PhotoError, match="too elongated"):
            read_rgb(tmp_path / name)
    assert read_rgb(tmp_path / "ok.png").shape == (200, 10, 3)


@pytest.mark.parametrize("mode, peak", [("I;16", 65535), ("I", 65535), ("I", 255)])
def test_16_and_32_bit_gray_scale_exactly_as_the_float_formula(tmp_path, mode, peak):
    """Integers replace the float64 copy: the same 8-bit values as round(v / peak * 255), value by value."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, peak + 1, (37, 53)).astype(np.uint16 if mode == "I;16" else np.int32)
    values[0, :3] = (0, peak, peak // 2)
    Image.fromarray(values).save(tmp_path / "g.png" if mode == "I;16" else tmp_path / "g.tif")
    out = read_rgb(tmp_path / ("g.png" if mode == "I;16" else "g.tif"))
    expected = np.clip(values.astype(np.float64) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "I;16"), ("PNG", "RGBA")])
def test_a_large_photo_is_reduced_as_it_is_decoded(tmp_path, fmt, mode):
    import io

    from detret.data.images import decode_reduced

    data = _saved(fmt, size=(5000, 3000), mode=mode)
    exif_rotated = fmt == "JPEG"
    if exif_rotated:   # stored on its side: the upright photo is 3000 x 5000
        img = Image.open(io.BytesIO(data))
        exif = img.getexif()
        exif[0x0112] = 6
        buf = io.BytesIO()
        img.save(buf, format="JPEG", exif=exif)
        data = buf.getvalue()
    decoded = decode_reduced(io.BytesIO(data), "big", max_side_px=1600)
    assert max(decoded.rgb.shape[:2]) == 1600 and decoded.rgb.dtype == np.uint8
    assert decoded.size_wh == ((3000, 5000) if exif_rotated else (5000, 3000))
    sx, sy = decoded.scale_xy
    assert abs(sx - 0.32) < 0.01 and abs(sy - 0.32) < 0.01
    assert decode_reduced(io.BytesIO(data), "big").rgb.shape[:2] == (decoded.size_wh[1], decoded.size_wh[0])


def test_decoding_never_touches_the_warnings_filters_from_threads():
    """``warnings.catch_warnings`` is not thread-safe, and the service decodes in threads: the modules that run
    in its threads must not use it."""
    import ast
    import inspect

    import detret.data.images as images
    import detret.serve.uploads as uploads

    for module in (images, uploads):
        calls = [n for n in ast.walk(ast.parse(inspect.getsource(module)))
                 if isinstance(n, ast.Attribute) and n.attr == "catch_warnings"]
        assert not calls, module.__name__


def test_mutated_photos_are_read_or_refused_never_a_crash(tmp_path):
    """Seeded byte mutations of small photos in every allowed format: each is an image or a PhotoError, never
    another exception (a fuzzer found NotImplementedError in a plugin, which the service answered 500)."""
    import io

    from detret.data.images import decode_reduced

    rng = np.random.default_rng(26)
    seeds = [_saved(fmt, size=(40, 30), mode="RGB") for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")]
    outcomes = {"read": 0, "refused": 0}
    for _ in range(600):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(rng.integers(1, 6)):
            data[rng.integers(len(data))] = rng.integers(256)
        if rng.random() < 0.3:
            data = data[:rng.integers(8, len(data))]
        try:
            decode_reduced(io.BytesIO(bytes(data)), "fuzz", max_pixels=4_000_000, max_side_px=64)
            outcomes["read"] += 1
        except PhotoError:
            outcomes["refused"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0
