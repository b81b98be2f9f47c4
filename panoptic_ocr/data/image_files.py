"""The project's one reader of image and label files.

Detectron2's ``read_image`` converts a 16-bit grey PNG (PIL mode ``I;16``) to RGB by clipping
every value above 255, so such an image became all white. :func:`read_image` has the same
contract (EXIF orientation applied, ``HWC`` uint8 0..255 in the requested format) and scales
16-bit images to 8 bits (``round(v / 257)``, 65535 -> 255); it refuses images whose values need
more than 16 bits (mode ``I`` with values outside 0..65535) and float images (mode ``F``):
their scale (0..1? 0..255? 0..65535?) cannot be known from the file.

:func:`read_label_file` reads a label file without any conversion (its own integer dtype).
"""

import numpy as np
from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = ["ImageModeError", "read_image", "read_label_file", "to_8bit"]

_MAX_16BIT = 65535


class ImageModeError(ValueError):
    """An image file whose pixel type cannot be read as an 8-bit image; the message names the file
    and its PIL mode."""


def _open(file_name: str, what: str) -> Image.Image:
    """Open ``file_name`` with EXIF orientation applied and its pixels loaded.

    Raises:
        OSError: the file is missing or not an image PIL can decode (names it).
    """
    try:
        with PathManager.open(file_name, "rb") as f:
            image = Image.open(f)
            image.load()
            return _apply_exif_orientation(image)
    except Exception as e:  # PIL raises several types; the file name is what the user needs
        raise OSError(f"Cannot read {what} file '{file_name}': {e}") from e


def to_8bit(image: Image.Image, file_name: str) -> Image.Image:
    """``image`` itself, or for a 16-bit image (``I;16*``, or ``I`` within 0..65535) the ``L``
    image ``round(v / 257)``.

    Raises:
        ImageModeError: mode ``F`` (float), or mode ``I`` with values outside 0..65535.
    """
    mode = image.mode
    if mode == "F":
        raise ImageModeError(
            f"Image file '{file_name}' is a float image (PIL mode 'F'); only 8-bit and 16-bit "
            f"integer images can be read: convert it to an 8-bit (or 16-bit) PNG or JPEG"
        )
    if not (mode == "I" or mode.startswith("I;16")):
        return image
    values = np.asarray(image)
    if mode == "I" and values.size and (values.min() < 0 or values.max() > _MAX_16BIT):
        raise ImageModeError(
            f"Image file '{file_name}' is a 32-bit integer image (PIL mode 'I') with values in "
            f"[{int(values.min())}, {int(values.max())}], beyond 16 bits (0..65535); only 8-bit "
            f"and 16-bit images can be read: convert it to an 8-bit (or 16-bit) PNG"
        )
    scaled = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def read_image(file_name: str, format: str = None) -> np.ndarray:
    """``detection_utils.read_image`` (EXIF orientation, then ``format``: a PIL mode, "BGR" or
    "YUV-BT.601"), with 16-bit images scaled to 8 bits instead of clipped.

    Returns:
        ``[H, W, C]`` uint8 (``[H, W]`` for ``format=None`` on a single-channel image).
    Raises:
        OSError: the file cannot be read (names it).
        ImageModeError: a float image or one beyond 16 bits (names the file and mode).
    """
    image = to_8bit(_open(file_name, "image"), file_name)
    return convert_PIL_to_numpy(image, format)


def read_label_file(file_name: str) -> np.ndarray:
    """The pixel values of a label file as stored (EXIF orientation applied, no conversion): an
    array of the file's own dtype (uint8, uint16, int32, float32, ...).

    Raises:
        OSError: the file cannot be read (names it).
    """
    return np.asarray(_open(file_name, "label"))
