"""Fashion-MNIST / MNIST IDX files: reader, search path, and the small subset shipped in the package."""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).parent / "data"
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
# IDX element types: the third byte of the magic number.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array, checking its header and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read ({error}); the file is damaged or truncated") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        got = raw[:4].hex() if raw else "an empty file"
        raise DatasetError(f"{path}: not an IDX file: expected magic 0x0000TTDD (TT in 08..0E), got {got}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header: expected {header} bytes, got {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: header says shape {shape} ({expected} bytes of data), but the file holds "
            f"{len(raw) - header} bytes; it is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_data_dir(data: str | os.PathLike | None = None) -> Path:
    """The first directory holding the four IDX files: `data`, $THEANINE_DATA, Debian's, then the shipped subset."""
    candidates = [Path(data)] if data is not None else []
    if data is None and os.environ.get("THEANINE_DATA"):
        candidates.append(Path(os.environ["THEANINE_DATA"]))
    if data is None:
        candidates += [DEBIAN, SHIPPED]
    for directory in candidates:
        if all(_find(directory, f"{split}-{kind}-idx{n}-ubyte") for split in ("train", "t10k") for kind, n in (("images", 3), ("labels", 1))):
            return directory
    searched = ", ".join(str(c) for c in candidates)
    raise DatasetError(
        f"no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], ...) found in: {searched}"
    )


@dataclass
class Split:
    """Images (n, 28, 28) uint8 and labels (n,) uint8."""

    images: np.ndarray
    labels: np.ndarray


def load_split(directory: Path, split: str) -> Split:
    images_path = _find(directory, f"{split}-images-idx3-ubyte")
    labels_path = _find(directory, f"{split}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise DatasetError(f"{directory}: missing {split}-images-idx3-ubyte or {split}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected 3-d images (n, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected 1-d labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return Split(images, labels)


def load_fashion_mnist(data: str | os.PathLike | None = None, flatten: bool = True, dtype: str = "float32"):
    """((x_train, y_train), (x_test, y_test)) scaled to [0, 1]; `flatten` gives (n, 784) rows."""
    directory = find_data_dir(data)
    out = []
    for split in ("train", "t10k"):
        part = load_split(directory, split)
        x = part.images.astype(dtype) / np.asarray(255, dtype)
        if flatten:
            x = x.reshape(len(x), -1)
        out.append((x, part.labels.astype("int32")))
    return tuple(out), directory


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip when the name ends in .gz), atomically."""
    array = np.asarray(array)
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}.get(array.dtype)
    if code is None:
        raise TypeError(f"write_idx supports uint8 and int8 arrays, got {array.dtype}")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with (gzip.open(temporary, "wb", compresslevel=9) if path.suffix == ".gz" else open(temporary, "wb")) as f:
        f.write(payload)
    os.replace(temporary, path)
