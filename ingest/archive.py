"""Reading the members of a ZIP archive (an EPUB) without trusting what the archive says.

A ZIP's central directory states each member's sizes, but nothing holds the deflated data to
them, and a hundred kilobytes of deflate can inflate to gigabytes (a "decompression bomb").
`ZipArchive.read` therefore inflates a member in blocks of `_BLOCK` bytes, counting what
actually comes out, and stops as soon as one of `ArchiveLimits` is passed: the inflated
size of one member, the ratio of inflated to compressed size once a member is big, and the
inflated size of all the members read from the archive so far. `ZipArchive.head` reads only
the first few bytes of a member, so recognizing a file costs next to nothing whatever it
holds. Members may only be stored or deflated, the two methods EPUB allows: zipfile inflates
bzip2 and LZMA a whole compressed block at a time, so those could not be stopped part way.

Every failure is an IngestError written for the person who gave the file: a broken or
unsupported archive is a DamagedFileError (or UnsupportedFormatError), an encrypted member
an IngestError, a member past a limit a TooLargeError.

It does not extract or write archives, or verify anything zipfile does not (CRCs are
checked by zipfile when a member is read to its end). It knows nothing of EPUB's structure,
but its messages speak of EPUBs, the only archives longread reads.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from ingest.errors import DamagedFileError, IngestError, TooLargeError, UnsupportedFormatError

_MIB = 1024 * 1024
_BLOCK = 64 * 1024
_ENCRYPTED_FLAG = 0x1
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_METHOD_NAMES = {
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "LZMA",
    9: "Deflate64",
    99: "AES encryption",
}
# What zipfile raises on a damaged archive besides BadZipFile. Seen while fuzzing:
# NotImplementedError (a "version needed" or header flag it does not implement), ValueError
# and its UnicodeDecodeError (bad member names), EOFError (data cut short), zlib.error
# (corrupt deflate). OSError and struct.error are what its reads and header unpacking raise
# in principle; zipfile guards them, but a crash here would lose the person's message.
_ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    ValueError,
    EOFError,
    OSError,
    zlib.error,
    struct.error,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """How much a ZIP may inflate to before it is refused as a decompression bomb.

    The defaults are far above any real book: longread reads only an EPUB's text members
    (XHTML, the package document, the table of contents), and even the longest books'
    text inflates to tens of megabytes in all, a few megabytes per chapter file. Images and
    fonts, the bulk of large EPUBs, are never read, so they count against nothing.

    `member_bytes`: the most one member may inflate to.
    `total_bytes`: the most all the members read from one archive may inflate to together,
    so a bomb cannot be spread over many members or one member listed many times.
    `ratio`: past `ratio_free_bytes`, a member may not inflate to more than this many times
    its compressed size. Text and markup deflate 3 to 10 times; only data made to repeat
    (a bomb) deflates 100 times or more, and only a big member is worth refusing for it.
    """

    member_bytes: int = 64 * _MIB
    total_bytes: int = 128 * _MIB
    ratio: int = 100
    ratio_free_bytes: int = 8 * _MIB


class ZipArchive:
    """An open ZIP archive whose members are read under `ArchiveLimits`.

    `name` is the file's name, used in messages. Opening raises DamagedFileError when the
    bytes are not a ZIP archive zipfile can read.
    """

    def __init__(self, data: bytes, name: str, limits: ArchiveLimits | None = None) -> None:
        self.name = name
        self.limits = limits or ArchiveLimits()
        self._size = len(data)
        self._inflated = 0
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except _ZIP_ERRORS as error:
            raise DamagedFileError(
                f"{name} is damaged: it is not a readable ZIP archive, as an EPUB must be ({error})"
            ) from error
        self._members = {info.filename: info for info in self._zip.infolist()}
        # Built once: looking a path up by letter case must not cost a scan of every member.
        self._folded: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            self._folded.setdefault(info.filename.casefold(), info)

    def __enter__(self) -> ZipArchive:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self) -> set[str]:
        """The member names the central directory lists."""
        return set(self._members)

    def member(self, path: str) -> zipfile.ZipInfo | None:
        """The member at `path`; some books differ from their manifest in letter case."""
        return self._members.get(path) or self._folded.get(path.casefold())

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """The inflated bytes of member `info`, refused as soon as they pass a limit."""
        blocks: list[bytes] = []
        inflated = 0
        # The stated compressed size cannot exceed the archive it lies in; a lie here would
        # only loosen the ratio, so the archive's size bounds it.
        compressed = max(1, min(info.compress_size, self._size))
        with self._open(info) as stream:
            while block := self._block(stream, info, _BLOCK):
                inflated += len(block)
                self._inflated += len(block)
                self._check(info, inflated, compressed)
                blocks.append(block)
        return b"".join(blocks)

    def head(self, info: zipfile.ZipInfo, size: int) -> bytes:
        """At most the first `size` bytes of member `info` (whatever it inflates to)."""
        with self._open(info) as stream:
            return self._block(stream, info, size)

    def _open(self, info: zipfile.ZipInfo) -> IO[bytes]:
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise IngestError(
                f"{self.name} is password-protected: {info.filename} inside it is encrypted,"
                " and longread cannot read it"
            )
        if info.compress_type not in _METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise UnsupportedFormatError(
                f"{self.name} cannot be read: {info.filename} inside it is compressed with"
                f" {method}, and EPUBs may only use deflate. Re-save the book with an EPUB"
                " editor (Calibre, Sigil) and add that copy."
            )
        try:
            return self._zip.open(info)
        except _ZIP_ERRORS as error:
            raise self._damaged(info, error) from error

    def _block(self, stream: IO[bytes], info: zipfile.ZipInfo, size: int) -> bytes:
        try:
            # ZipExtFile.read(n) inflates at most about n bytes for stored and deflated
            # members, whatever the headers claim.
            return stream.read(size)
        except _ZIP_ERRORS as error:
            raise self._damaged(info, error) from error

    def _check(self, info: zipfile.ZipInfo, inflated: int, compressed: int) -> None:
        limits = self.limits
        if inflated > limits.member_bytes:
            if info.compress_type == zipfile.ZIP_STORED:
                raise TooLargeError(
                    f"{self.name} is too large to read: its member {info.filename} holds more"
                    f" than {_megabytes(limits.member_bytes)}, more than any book's text;"
                    " longread refuses it"
                )
            raise self._bomb(
                f"its member {info.filename} inflates past {_megabytes(limits.member_bytes)}"
            )
        if inflated > limits.ratio_free_bytes and inflated > limits.ratio * compressed:
            raise self._bomb(
                f"its member {info.filename} inflates past {_megabytes(inflated)} from"
                f" {_megabytes(compressed)}, over {limits.ratio} times its compressed size"
            )
        if self._inflated > limits.total_bytes:
            raise self._bomb(f"its members inflate past {_megabytes(limits.total_bytes)} in all")

    def _bomb(self, what: str) -> TooLargeError:
        return TooLargeError(
            f"{self.name} looks like a decompression bomb: {what}; longread refuses it"
        )

    def _damaged(self, info: zipfile.ZipInfo, error: Exception) -> DamagedFileError:
        return DamagedFileError(
            f"{self.name} is damaged: {info.filename} inside it cannot be read ({error})"
        )


def _megabytes(size: int) -> str:
    return f"{size // _MIB} MB" if size >= _MIB else f"{size // 1024} KB"
