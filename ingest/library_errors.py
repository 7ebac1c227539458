"""Which LibraryError a failed SQLite call or file operation on the library is, and its words.

`translated(path)` wraps every touch of a library file (ingest/library.py's methods, the
open, the migration backup, ingest/repair.py) so that a sqlite3 or OS error comes out as
a LibraryError subclass whose message names the file and says what to do. `damage_found`
is the whole-file check the library runs once before trusting a file.

SQLite's result codes decide (Python 3.11 puts them on the exception as sqlite_errorcode,
extended; the low byte is the primary code), never the message, but for the one failure
Python raises without a code: text that does not decode as UTF-8, which in a file only
longread writes means damaged pages. sqlite3.ProgrammingError and InterfaceError (a closed
connection, the wrong number of parameters) are bugs in longread, not states of the file,
so they are not translated: a message telling the person to repair or free space would
send them the wrong way.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.errors import (
    LibraryBusyError,
    LibraryConstraintError,
    LibraryDamagedError,
    LibraryDiskFullError,
    LibraryError,
    LibraryIOError,
    LibraryReadOnlyError,
)

# SQLite's primary result codes (https://sqlite.org/rescode.html); the extended codes
# Python reports carry one of these in their low byte.
_PERM = 3
_BUSY = 5
_LOCKED = 6
_READONLY = 8
_IOERR = 10
_CORRUPT = 11
_FULL = 13
_CANTOPEN = 14
_CONSTRAINT = 19
_NOTADB = 26

# A quick_check lists at most this many problems; the first few say enough to the person.
_DAMAGE_DETAIL_LINES = 3


@contextmanager
def translated(path: Path) -> Iterator[None]:
    """Re-raise a sqlite3 or OS error met inside as the LibraryError it stands for.

    LibraryErrors raised inside (a missing document, found damage) pass through as they are.
    """
    try:
        yield
    except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise
    except (sqlite3.Error, OSError) as error:
        raise library_error(error, path) from error


def library_error(error: sqlite3.Error | OSError, path: Path) -> LibraryError:
    """The LibraryError, with its message, for `error` met using the library file `path`."""
    if isinstance(error, OSError):
        return _os_error(error, path)
    detail = str(error)
    if is_damage(error):
        return damaged_error(path, detail)
    primary = _primary_code(error)
    # Opening, or making the -wal and -shm files beside it, in a folder that cannot be
    # written fails with any of these; said as damage or a failing disk, it would mislead.
    if primary == _READONLY or (
        primary in (_CANTOPEN, _PERM, _IOERR) and not _writable(path.parent)
    ):
        return read_only_error(path)
    if primary in (_BUSY, _LOCKED):
        return LibraryBusyError(
            f"the library {path} is busy: another longread is writing to it. Nothing was"
            " changed; try again when it has finished"
        )
    if primary == _FULL:
        return _full_error(path, detail)
    if primary == _IOERR:
        return _io_error(path, detail)
    if primary == _CANTOPEN:
        return LibraryError(
            f"the library file {path} cannot be opened ({detail}); check that it is a file"
            " you can read and write"
        )
    if primary == _CONSTRAINT:
        return LibraryConstraintError(
            f"a write to the library {path} broke one of its rules ({detail}); nothing was"
            " changed. This is a bug in longread: please report it"
        )
    return LibraryError(f"the library {path} could not be used ({detail}); nothing was changed")


def is_damage(error: sqlite3.Error) -> bool:
    """Whether `error` says the file's bytes are broken (not the disk, a lock or the folder).

    Text that does not decode is the one such failure Python raises without a code.
    """
    primary = _primary_code(error)
    return primary in (_CORRUPT, _NOTADB) or (
        primary is None and isinstance(error, sqlite3.OperationalError) and "decode" in str(error)
    )


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def damaged_error(path: Path, detail: str) -> LibraryDamagedError:
    return LibraryDamagedError(
        f"the library file {path} is damaged ({detail}). Nothing was changed. Run"
        " `longread repair` to keep every document that can still be read (it copies the"
        " damaged file aside first), then add the lost ones again"
    )


def read_only_error(path: Path) -> LibraryReadOnlyError:
    """Name what cannot be written: the data dir (most often), else the file itself."""
    home = path.parent
    if not _writable(home):
        return LibraryReadOnlyError(
            f"the data dir {home} is read-only; longread needs to write there: make it"
            " writable, or point LONGREAD_HOME elsewhere"
        )
    return LibraryReadOnlyError(
        f"the library file {path} is read-only; longread needs to write to it: make it"
        " writable, or point LONGREAD_HOME elsewhere"
    )


def damage_found(db: sqlite3.Connection) -> str | None:
    """What SQLite's quick_check finds wrong with the whole file, or None when it is whole.

    quick_check walks every page of every table and index (not comparing indexes with
    their tables, which integrity_check does at several times the cost): about 0.1 s per
    250 MB when cached. Damage it reports, or damage so bad that it cannot run, counts.
    """
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as error:
        if is_damage(error):
            return str(error)
        raise
    if [str(row[0]) for row in rows] == ["ok"]:
        return None
    # A row may hold several problems a line each under a "*** in database main ***"
    # header: a problem a line, so the message stays one line however many there are.
    problems = [
        line.strip()
        for row in rows
        for line in str(row[0]).splitlines()
        if line.strip() and not line.startswith("***")
    ]
    shown = "; ".join(problems[:_DAMAGE_DETAIL_LINES])
    more = len(problems) - _DAMAGE_DETAIL_LINES
    return f"{shown}; and {more} more problems" if more > 0 else shown


def _os_error(error: OSError, path: Path) -> LibraryError:
    detail = error.strerror or str(error)
    if isinstance(error, PermissionError) or error.errno == errno.EROFS:
        return read_only_error(path)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full_error(path, detail)
    if isinstance(error, FileExistsError | NotADirectoryError):  # from making the data dir
        return LibraryError(
            f"the data dir {path.parent} cannot be made ({detail}): something that is not a"
            " folder is in its way. Move that, or point LONGREAD_HOME elsewhere"
        )
    return _io_error(path, detail)


def _full_error(path: Path, detail: str) -> LibraryDiskFullError:
    return LibraryDiskFullError(
        f"the disk holding the data dir {path.parent} is full ({detail}); nothing was"
        " changed. Free some space there and try again"
    )


def _io_error(path: Path, detail: str) -> LibraryIOError:
    return LibraryIOError(
        f"the library file {path} could not be read or written ({detail}): the disk or its"
        " connection may be failing. Check it, then try again"
    )


def _writable(folder: Path) -> bool:
    """Whether files can be made in `folder` (or in its nearest existing parent, for a data
    dir not made yet). os.access asks the kernel, so a read-only mount counts too."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)
