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
