"""Errors raised while reading files into the library, written for the person who gave the file.

Every message names the file, says what is wrong, and where there is one, the fix.
The library's own failures (a damaged, read-only, busy or full library) are LibraryErrors;
ingest/library_errors.py decides which one a SQLite or OS error is.
"""

from __future__ import annotations

import sqlite3


class IngestError(Exception):
    """A file could not be added; the message is meant to be shown as it is."""


class UnsupportedFormatError(IngestError):
    """The file's bytes are not a format longread reads, or not the one its extension claims."""


class EmptyFileError(IngestError):
    """The file has no bytes, or no text once read."""


class PasswordError(IngestError):
    """An encrypted PDF whose password is missing or wrong."""


class NoTextLayerError(IngestError):
    """A PDF made of images (a scan): there is no text to extract without OCR."""


class DamagedFileError(IngestError):
    """The file is broken beyond what the reader can recover."""


class TooLargeError(IngestError):
    """A file, or what it inflates to, is far larger than any document: a decompression bomb."""


class LibraryError(IngestError):
    """A problem with the library itself (its database), not with a file."""


class DocumentNotFoundError(LibraryError):
    """No document matches the id prefix or title fragment given."""


class AmbiguousDocumentError(LibraryError):
    """Several documents match; the message lists them so the person can be precise."""


class LibraryDamagedError(LibraryError):
    """The library file is damaged (corrupt pages, or not a database at all); nothing was
    changed, and `longread repair` keeps what can still be read."""


class LibraryReadOnlyError(LibraryError):
    """The data dir or the library file cannot be written. Not damage: the file is fine."""


class LibraryBusyError(LibraryError):
    """Another longread held the library's write lock for longer than the wait allows."""


class LibraryDiskFullError(LibraryError):
    """The disk holding the library is full; the write was rolled back."""


class LibraryIOError(LibraryError):
    """The operating system failed to read or write the library file (a failing disk)."""


class LibraryConstraintError(LibraryError, sqlite3.IntegrityError):
    """A write broke one of the library's rules (a duplicate key, a row with no parent): a
    bug in the caller, not in the file. Still a sqlite3.IntegrityError, so code written
    before the library translated its errors catches it as it did."""
