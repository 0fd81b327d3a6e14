"""Every odd input a user can hand us is read correctly or refused with one clear message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facestream.errors import FacestreamError
from facestream.stream.engine.imageio import load_image
from tests.conftest import EXAMPLES

PHOTO = EXAMPLES / "Joe_Biden" / "biden.jpg"


def test_plain_jpeg_is_rgb_uint8():
    img = load_image(PHOTO)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.jpg", "Image not found"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.jpg", b""), "is empty"),
        (lambda d: _write(d / "notes.jpg", b"these are not pixels\n" * 20), "not an image"),
        (lambda d: _write(d / "cut.jpg", PHOTO.read_bytes()[:3000]), "damaged or truncated"),
    ],
    ids=["missing", "directory", "zero-bytes", "not-an-image", "truncated-jpeg"],
)
def test_bad_files_give_one_clear_error(tmp_path, make, message):
    with pytest.raises(FacestreamError, match=message) as err:
        load_image(make(tmp_path))
    assert err.value.fix  # every message says what to do


def _write(path, data):
    path.write_bytes(data)
    return path


def test_greyscale_rgba_and_16bit_become_rgb(tmp_path):
    rgb = load_image(PHOTO)
    grey = Image.fromarray(rgb).convert("L")
    grey.save(tmp_path / "grey.png")
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(tmp_path / "rgba.png")
    sixteen = Image.fromarray((np.asarray(grey, dtype=np.uint16) * 257).astype(np.uint16))
    sixteen.save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    for name in ("grey.png", "rgba.png", "sixteen.png"):
        out = load_image(tmp_path / name)
        assert out.shape == rgb.shape and out.dtype == np.uint8
    # 16-bit data is scaled, not clipped: it must look like the 8-bit greyscale.
    diff = np.abs(load_image(tmp_path / "sixteen.png")[..., 0].astype(int) - np.asarray(grey, dtype=int))
    assert diff.max() <= 1


def test_exif_rotation_is_applied(tmp_path):
    rgb = load_image(PHOTO)
    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    out = load_image(tmp_path / "rotated.jpg")
    assert out.shape[:2] == (w, h)


def test_bytes_input_and_huge_image(tmp_path):
    assert load_image(PHOTO.read_bytes()).shape[2] == 3
    big = tmp_path / "big.png"
    Image.new("RGB", (7000, 7000), (90, 120, 150)).save(big, compress_level=1)  # 49 Mpx: within the limit
    assert load_image(big).shape == (7000, 7000, 3)
    Image.new("L", (7100, 7100)).save(tmp_path / "over.png", compress_level=1)  # 50.4 Mpx
    with pytest.raises(FacestreamError, match=r"7100x7100 pixels, more than the 50 Mpx"):
        load_image(tmp_path / "over.png")


def test_pgm_and_ppm_are_read_and_listed_like_every_format(tmp_path):
    """The classic face sets (AT&T/ORL) are PGM: every reader takes them, through one list of formats."""
    from facestream.stream.engine.imageio import image_files, is_image_file

    grey = Image.open(PHOTO).convert("L")
    grey.save(tmp_path / "s1_1.pgm")
    Image.open(PHOTO).save(tmp_path / "s1_2.ppm")
    (tmp_path / "notes.txt").write_text("not a photo")
    assert [p.name for p in image_files(tmp_path)] == ["s1_1.pgm", "s1_2.ppm"]
    assert is_image_file("FACE.PGM") and not is_image_file("notes.txt")
    pgm = load_image(tmp_path / "s1_1.pgm")
    assert pgm.shape == (grey.height, grey.width, 3) and np.array_equal(pgm[..., 0], np.asarray(grey))
    assert load_image(tmp_path / "s1_2.ppm").shape[2] == 3
