"""Checks of a TIFF file's structure, before any of its image data are read.

tifffile reads what it can of a damaged file: a stack cut short is read as its first
page, a header that declares more pixels than the file holds is allocated in full. The
checks here refuse such files with one line instead:

* :func:`check_layout` walks the chain of image file directories (IFDs) itself, by the
  TIFF specification: every directory, every tag value stored outside its directory and
  every strip or tile must lie inside the file, the chain must end (no loop), and an
  uncompressed page must hold as many bytes as its size declares;
* :func:`check_pages` compares the pages tifffile read with the chain, and with the number
  of images the file's ImageJ, OME or tifffile metadata declare (ImageJ and tifffile
  files may store the images after the first page contiguously, without directories:
  those must then fit in the file).
"""

from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from .._memory import format_bytes
from ._common import _display

# bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
# UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD, LONG8, SLONG8, IFD8)
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TYPE_SIZES.update({13: 4, 16: 8, 17: 8, 18: 8})
_INT_FORMATS = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
# the tags whose values the checks need: width, length, bits per sample, compression,
# strip offsets, samples per pixel, strip byte counts, tile offsets, tile byte counts
_NEEDED = (256, 257, 258, 259, 273, 277, 279, 324, 325)


def _unreadable(path: Path, why: str) -> ValueError:
    return ValueError(f"{_display(path)} is not a readable TIFF file: {why}.")


def _beyond(path: Path, size: int, what: str, end: int) -> ValueError:
    return _unreadable(
        path,
        f"it ends at byte {size} but {what} needs bytes up to {end} (the file is "
        "truncated or damaged)",
    )


class _Reader:
    """Little- or big-endian, classic or BigTIFF reading of one open file."""

    def __init__(self, fh, path: Path, size: int, head: bytes):
        self.fh, self.path, self.size = fh, path, size
        self.bo = "<" if head[:2] == b"II" else ">"
        self.big = struct.unpack(self.bo + "H", head[2:4])[0] == 43
        # count of tags, size of an offset, size of one directory entry
        self.nfmt, self.osize, self.entry = ("Q", 8, 20) if self.big else ("H", 4, 12)
        self.ofmt = "Q" if self.big else "I"
        # one directory entry: tag code, field type, count, value (or offset of the value)
        self.entry_fmt = f"{self.bo}HH{self.ofmt}{self.osize}s"
        self._scalars: dict = {}

    def unpack(self, fmt: str, data: bytes):
        return struct.unpack(self.bo + fmt, data)[0]

    def values(self, tag, limit: int | None = None) -> list[int] | None:
        """The integer values of a tag (``(type, count, inline bytes or offset)``)."""
        if tag is None or tag[0] not in _INT_FORMATS:
            return None
        typ, count, where = tag
        if limit is not None:
            count = min(count, limit)
        code = _INT_FORMATS[typ]
        if isinstance(where, bytes):
            data = where[: count * _TYPE_SIZES[typ]]
        else:
            self.fh.seek(where)
            data = self.fh.read(count * _TYPE_SIZES[typ])
        return list(struct.unpack(f"{self.bo}{len(data) // _TYPE_SIZES[typ]}{code}", data))

    def scalar(self, tag, default: int) -> int:
        """The first value of an integer tag (``default`` when absent)."""
        if tag is None:
            return default
        key = (tag[0], tag[2] if isinstance(tag[2], bytes) else tag)
        if key not in self._scalars:  # the pages of a stack share their scalar tags
            self._scalars[key] = (self.values(tag, 1) or [default])[0]
        return self._scalars[key]

    def directory(self, offset: int, k: int) -> tuple[dict, int]:
        """The needed tags of the directory of page ``k`` at ``offset`` and the offset of
        the next one; refuses a directory or a tag value beyond the end of the file."""
        nsize = struct.calcsize(self.nfmt)
        if offset < 8 or offset + nsize > self.size:
            raise _beyond(self.path, self.size, f"page {k} (its directory)", offset + nsize)
        self.fh.seek(offset)
        n = self.unpack(self.nfmt, self.fh.read(nsize))
        end = offset + nsize + n * self.entry + self.osize
        if end > self.size:
            raise _beyond(self.path, self.size, f"page {k} (its directory)", end)
        raw = self.fh.read(n * self.entry + self.osize)
        tags: dict[int, tuple] = {}
        entries = struct.iter_unpack(self.entry_fmt, raw[: n * self.entry])
        for code, typ, count, field in entries:
            size = _TYPE_SIZES.get(typ)
            if size is None:
                continue  # an unknown type: readers skip the tag
            nbytes = count * size
            where: bytes | int = field
            if nbytes > self.osize:
                where = self.unpack(self.ofmt, field)
                if where + nbytes > self.size:
                    raise _beyond(
                        self.path, self.size, f"page {k} (its tag {code})", where + nbytes
                    )
            if code in _NEEDED:
                tags[code] = (typ, count, where)
        return tags, self.unpack(self.ofmt, raw[-self.osize :])

    def check_data(self, tags: dict, k: int) -> None:
        """Every strip or tile of page ``k`` inside the file, and an uncompressed page
        holding the bytes its size declares."""
        tiled = 324 in tags
        offsets = self.values(tags.get(324 if tiled else 273))
        counts = self.values(tags.get(325 if tiled else 279))
        if not offsets:
            return
        kind = "tile" if tiled else "strip"
        if counts and len(counts) == len(offsets):
            for j, (off, cnt) in enumerate(zip(offsets, counts)):
                if cnt and off + cnt > self.size:
                    what = f"page {k} (its {kind} {j + 1} of {len(offsets)})"
                    raise _beyond(self.path, self.size, what, off + cnt)
        compression = self.scalar(tags.get(259), 1)
        bits = self.scalar(tags.get(258), 1)
        if compression != 1 or bits % 8:
            return
        width, length = self.scalar(tags.get(256), 0), self.scalar(tags.get(257), 0)
        samples = self.scalar(tags.get(277), 1)
        declared = width * length * samples * bits // 8
        if not counts:  # readers assume the data follow the first offset
            if min(offsets) + declared > self.size:
                what = f"page {k} ({length}x{width} pixels of {samples}x{bits} bits)"
                raise _beyond(self.path, self.size, what, min(offsets) + declared)
        elif all(counts) and sum(counts) < declared:
            raise _unreadable(
                self.path,
                f"page {k} declares {length}x{width} pixels of {samples}x{bits} bits "
                f"({format_bytes(declared)}) but holds only {sum(counts)} bytes of "
                "uncompressed data (the file is damaged)",
            )


def check_layout(path: Path) -> int | None:
    """Check the directories and data of every page of the TIFF file ``path`` against its
    size; return the number of pages (None when the header is not a TIFF header, which
    tifffile then reports)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return None
        reader = _Reader(fh, path, size, head)
        version = reader.unpack("H", head[2:4])
        if version not in (42, 43) or (version == 43 and len(head) < 16):
            return None
        offset = reader.unpack(reader.ofmt, head[8:16] if reader.big else head[4:8])
        seen: set[int] = set()
        while offset:
            k = len(seen) + 1
            if offset in seen:
                raise _unreadable(
                    path,
                    f"the directory of page {k} points back to an earlier page (the "
                    "file is damaged)",
                )
            seen.add(offset)
            tags, offset = reader.directory(offset, k)
            reader.check_data(tags, k)
    return len(seen)


def _ome_planes(xml: str, name: str) -> int | None:
    """The number of planes the OME-XML declares for this file (None when unknown or
    when the data set spans several files)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    planes = 0
    for elem in root.iter():
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag == "UUID" and elem.get("FileName") not in (None, name):
            return None  # a multi-file data set: this file holds part of the planes
        if tag != "Pixels":
            continue
        try:
            z, c, t = (int(elem.get(f"Size{a}", "1")) for a in "ZCT")
            spp = 1
            for ch in elem:
                if ch.tag.rsplit("}", 1)[-1] == "Channel":
                    spp = max(1, int(ch.get("SamplesPerPixel", "1")))
                    break
        except ValueError:
            return None
        planes += z * t * max(1, c // spp)
    return planes or None


def _declared_images(tif, page0, path: Path) -> tuple[int, str] | None:
    """(images, words naming the metadata) that declare how many images the file holds."""
    if getattr(tif, "is_imagej", False):
        try:
            return int((tif.imagej_metadata or {}).get("images", 1)), "its ImageJ metadata"
        except (TypeError, ValueError):
            return None
    if getattr(tif, "is_ome", False) and tif.ome_metadata:
        planes = _ome_planes(tif.ome_metadata, path.name)
        return (planes, "its OME metadata") if planes else None
    shaped = getattr(tif, "shaped_metadata", None) if getattr(tif, "is_shaped", False) else None
    if shaped and len(shaped) == 1:
        try:
            total = math.prod(int(n) for n in shaped[0]["shape"])
        except (KeyError, TypeError, ValueError):
            return None
        per_page = math.prod(page0.shape)
        if per_page and total % per_page == 0:
            return total // per_page, "its tifffile metadata"
    return None


def check_pages(tif, path: Path, n_chain: int | None) -> None:
    """Refuse a file whose pages tifffile could not all read, or that holds fewer images
    than its metadata declare (see the module docstring)."""
    n = len(tif.pages)
    if n_chain is not None and n < n_chain:
        raise _unreadable(
            path, f"page {n + 1} of its {n_chain} pages cannot be read (the file is damaged)"
        )
    if not n:
        return
    page0 = tif.pages[0]
    declared = _declared_images(tif, page0, path)
    if declared is None or declared[0] <= n:
        return
    images, source = declared
    size = path.stat().st_size
    contiguous = page0.compression == 1 and bool(page0.is_contiguous)
    if source == "its OME metadata" or not contiguous:
        raise _unreadable(
            path,
            f"{source} declares {images} images but it holds {n} pages (the file is "
            "truncated or damaged)",
        )
    start, per_image = int(page0.dataoffsets[0]), int(page0.nbytes)
    if start + images * per_image > size:
        k = (size - start) // per_image + 1
        what = f"image {k} of the {images} {source} declares"
        raise _beyond(path, size, what, start + k * per_image)
