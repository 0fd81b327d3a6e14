"""Reading images from disk or bytes into RGB uint8 arrays, with one clear error per bad input.

Everything that enters the face engine comes through here, so the oddities of
real files are dealt with once: EXIF rotation, greyscale, alpha, 16-bit PNGs,
truncated or empty files, directories, and images too large to be sensible.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facestream.errors import FacestreamError

# The most pixels an image may have: 50 Mpx holds an 8K frame and a 48 Mpx phone photo. A 400 KB
# PNG can claim 20000x20000 pixels and cost gigabytes once decoded, so the limit holds for every
# decoder in the process: PIL (which Gradio uses for uploads too) refuses such an image from its
# header, before decoding. FACESTREAM_MAX_PIXELS changes it for the whole process.
MAX_PIXELS = int(os.environ.get("FACESTREAM_MAX_PIXELS", 50_000_000))
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: an error, not a warning

# The one list of readable image files, for every reader: enrolment folders, image-folder
# sources, the trainer's identity folders and the demo's upload box. PGM/PPM/PBM are the
# classic face sets' format (AT&T/ORL); GIF is read as its first frame.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".pbm", ".pnm")
FORMATS = "JPEG, PNG, BMP, WEBP, TIFF, GIF or PGM/PPM"


def is_image_file(path: str | Path) -> bool:
    """Whether a path names a file in one of the readable image formats (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: str | Path) -> list[Path]:
    """The readable image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


def load_image(source: str | Path | bytes) -> np.ndarray:
    """Load an image as an (H, W, 3) RGB uint8 array, upright as its EXIF says.

    Args:
        source: a path, or the encoded bytes of an image.

    Raises:
        FacestreamError: missing file, directory, empty/truncated/unknown file, absurd size.
    """
    name = "image bytes" if isinstance(source, bytes | bytearray) else str(source)
    if not isinstance(source, bytes | bytearray):
        path = Path(source)
        if not path.exists():
            raise FacestreamError(f"Image not found: {path}.", "Check the path and try again.")
        if path.is_dir():
            raise FacestreamError(f"{path} is a directory, not an image.", "Pass an image file (JPEG, PNG, ...).")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise FacestreamError(f"{name} is empty (0 bytes).", "Pass a real image file.")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        check_pixels(img.width, img.height, name)
        img.load()
    except FacestreamError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_large(name) from None
    except UnidentifiedImageError:
        raise FacestreamError(f"{name} is not an image facestream can read.", f"Use {FORMATS}.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FacestreamError(f"{name} is damaged or truncated ({exc}).",
                              "Re-export or re-download the image.") from None
    return pil_to_rgb(img)


def too_large(name: str, width: int | None = None, height: int | None = None) -> FacestreamError:
    size = f" is {width}x{height} pixels," if width else " has"
    return FacestreamError(f"{name}{size} more than the {MAX_PIXELS / 1e6:.0f} Mpx facestream reads (a picture "
                           "that large is more likely a decompression bomb than a photo).",
                           "Resize it first (or raise FACESTREAM_MAX_PIXELS).")


def check_pixels(width: int, height: int, name: str = "the image") -> None:
    """Refuse an image whose header claims more than ``MAX_PIXELS``, before anything decodes it."""
    if width * height > MAX_PIXELS:
        raise too_large(name, width, height)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL image (any mode, any orientation) to upright RGB uint8."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits by the actual range, as viewers do.
        arr = np.asarray(img, dtype=np.float64)
        hi = max(arr.max(), 1.0)
        arr = np.clip(arr * (255.0 / (65535.0 if hi > 255 else 255.0)), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Flatten transparency onto white so a transparent background is not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def save_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array to disk (format from the extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(rgb).save(path)
    except (OSError, ValueError) as exc:
        raise FacestreamError(f"Cannot write {path} ({exc}).", "Use a writable path ending in .jpg or .png.") from None
