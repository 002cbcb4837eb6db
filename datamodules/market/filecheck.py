"""What a bar file is, checked before any parser sees it: in seconds and in bounded memory.

:func:`check_file` refuses, with one :class:`DataValidationError` naming the reason and the fix:

* a symlink loop, a dangling symlink, a directory, a missing file (each named as such);
* a file larger than :data:`MAX_FILE_BYTES` (512 MiB: a 2015-2021 AMC minute file with extended hours is about
  0.15 GiB as CSV; 2.5 M rows of yfinance CSV are 0.17 GiB), refused from its size alone;
* for text files (``.csv``, ``.txt``, no suffix): UTF-16/UTF-32 text (by its byte-order mark or the NUL byte in
  every other position), NUL bytes anywhere (a binary file, or a valid CSV padded with NULs: the head and the tail
  are looked at first, so a 2 GiB padded file is refused without being read), bytes that are not UTF-8 (named
  with their position), a decimal comma (``20,15``) and ``;``-separated fields.

The text scan reads the file once in 1 MiB blocks (never more in memory) and yields its SHA-256 for the data card.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataValidationError

__all__ = ["MAX_FILE_BYTES", "FileFacts", "check_file"]

MAX_FILE_BYTES = 512 * 2**20
_BLOCK = 1 << 20
_EDGE = 64 * 1024  # bytes looked at first at the head and the tail
TEXT_SUFFIXES = (".csv", ".txt", "")
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_UTF8_FIX = (
    "save it as UTF-8 (e.g. `iconv -f {enc} -t UTF-8 in.csv > out.csv`, or a spreadsheet's 'CSV UTF-8')"
)


@dataclass(frozen=True)
class FileFacts:
    """``path`` as given; ``size`` [bytes]; ``sha256`` of the bytes (None for files not scanned: parquet, gzip)."""

    path: Path
    size: int
    sha256: str | None


def check_file(path: str | os.PathLike) -> FileFacts:
    """Refuse what cannot be a readable bar file (see the module docstring); return its size and SHA-256."""
    p = Path(path)
    st = _stat(p)
    if p.is_dir():
        raise DataValidationError(f"DATA={str(p)!r} is a directory; DATA= takes one CSV or parquet file")
    if st.st_size > MAX_FILE_BYTES:
        raise DataValidationError(
            f"{p} is {st.st_size / 2**30:.2f} GiB, above the {MAX_FILE_BYTES // 2**20} MiB limit for a market "
            "file (seven years of AMC minute bars are about 0.15 GiB); keep the years you need in a smaller file "
            "and pass that with DATA="
        )
    if p.suffix.lower() not in TEXT_SUFFIXES:
        return FileFacts(p, st.st_size, None)
    try:
        with open(p, "rb") as fh:
            head = fh.read(_EDGE)
            _check_head(p, head)
            if st.st_size > 2 * _EDGE:
                fh.seek(st.st_size - _EDGE)
                tail = fh.read(_EDGE)
                if b"\x00" in tail:
                    _refuse_nul(p, st.st_size - _EDGE + tail.index(b"\x00"), st.st_size)
            fh.seek(0)
            digest = _scan(p, fh, st.st_size)
    except OSError as err:  # permission denied, an I/O error of the disk or network share
        raise DataValidationError(
            f"DATA={str(p)!r} cannot be read ({err.strerror or type(err).__name__}); fix the file's permissions or "
            "copy it to a local disk"
        ) from None
    _check_separators(p, head)
    return FileFacts(p, st.st_size, digest)


def _stat(p: Path) -> os.stat_result:
    try:
        return os.stat(p)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataValidationError(
                f"DATA={str(p)!r} is a symlink loop (a link that points back to itself); point DATA= at the "
                "file itself"
            ) from None
        if os.path.islink(p):
            raise DataValidationError(
                f"DATA={str(p)!r} is a symlink to {os.readlink(p)!r}, which does not exist; point DATA= at the "
                "file itself"
            ) from None
        if err.errno == errno.EACCES:
            raise DataValidationError(
                f"DATA={str(p)!r} cannot be read (permission denied); fix its permissions"
            ) from None
        raise FileNotFoundError(f"price file not found: {p}") from None


def _check_head(p: Path, head: bytes) -> None:
    boms = {
        codecs.BOM_UTF32_LE: "UTF-32",
        codecs.BOM_UTF32_BE: "UTF-32",
        codecs.BOM_UTF16_LE: "UTF-16",
        codecs.BOM_UTF16_BE: "UTF-16",
    }
    for bom, enc in boms.items():  # UTF-32 first: its little-endian BOM starts with UTF-16's
        if head.startswith(bom):
            raise DataValidationError(
                f"{p} is {enc} text (byte-order mark {bom.hex(' ').upper()}), not UTF-8; "
                + _UTF8_FIX.format(enc=enc)
            )
    sample = head[:4096]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) > 0.8 * len(odd) or even.count(0) > 0.8 * len(even):
            raise DataValidationError(
                f"{p} is UTF-16 text without a byte-order mark (a NUL byte in every other position), not UTF-8; "
                + _UTF8_FIX.format(enc="UTF-16LE")
            )
    if b"\x00" in head:
        _refuse_nul(p, head.index(b"\x00"), None)


def _refuse_nul(p: Path, offset: int, size: int | None) -> None:
    where = f"at byte {offset:,}" + (f" of {size:,}" if size else "")
    raise DataValidationError(
        f"{p} is not a text CSV file: NUL bytes {where} (binary content, or a CSV padded or damaged by a "
        "failed copy); pass the intact CSV, or a .parquet file, with DATA="
    )


def _scan(p: Path, fh: io.BufferedReader, size: int) -> str:
    """One pass in 1 MiB blocks: SHA-256, NUL bytes and UTF-8 validity (a sequence cut by a block boundary is fine)."""
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while block := fh.read(_BLOCK):
        h.update(block)
        nul = block.find(b"\x00")
        if nul >= 0:
            _refuse_nul(p, offset + nul, size)
        if not block.isascii() or decoder.getstate()[0]:
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                bad = block[err.start : err.start + 1]
                enc = "windows-1252" if bad and 0x80 <= bad[0] <= 0x9F else "latin1"
                raise DataValidationError(
                    f"{p} is not UTF-8 text: byte 0x{bad.hex().upper()} at byte {offset + err.start:,} "
                    f"(Latin-1 / Windows-1252?); " + _UTF8_FIX.format(enc=enc)
                ) from None
        offset += len(block)
    if decoder.getstate()[0]:
        raise DataValidationError(
            f"{p} ends inside a UTF-8 character (a truncated file?); pass the intact file"
        )
    return h.hexdigest()


def _check_separators(p: Path, head: bytes) -> None:
    """A decimal comma (``20,15``) or ``;`` between fields, named from the first lines."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if len(lines) < 2:
        return
    header = lines[0]
    if header.count(";") >= 4 and header.count(";") > header.count(","):
        comma_decimal = any(_DECIMAL_COMMA.match(field) for line in lines[1:] for field in line.split(";"))
        raise DataValidationError(
            f"{p} separates fields with ';'"
            + (" and writes decimal commas (e.g. '20,15')" if comma_decimal else "")
            + "; save it with ',' between fields and '.' as the decimal point, e.g. "
            + "pandas.read_csv(path, sep=';', decimal=',').to_csv('fixed.csv', index=False)"
        )
    rows = list(csv.reader(lines))
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        quoted = [f for f in row if _DECIMAL_COMMA.match(f)]
        if quoted or (len(row) > width and any(re.fullmatch(r"\d+", f) for f in row[1:])):
            example = quoted[0] if quoted else ",".join(row[1:3])
            raise DataValidationError(
                f"{p} writes numbers with a comma inside (line {number}: {example!r}): a decimal comma (or a "
                "thousands separator); save it with '.' as the decimal point and no thousands separator (a "
                "spreadsheet set to an English locale, or pandas.read_csv(..., decimal=','))"
            )
