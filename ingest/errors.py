"""Errors raised while reading files into the library, written for the person who gave the file.

Every message names the file, says what is wrong, and where there is one, the fix.
"""

from __future__ import annotations


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


class LibraryError(IngestError):
    """A problem with the library itself (its database), not with a file."""


class DocumentNotFoundError(LibraryError):
    """No document matches the id prefix or title fragment given."""


class AmbiguousDocumentError(LibraryError):
    """Several documents match; the message lists them so the person can be precise."""
