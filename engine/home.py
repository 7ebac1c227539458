"""The data dir: where it is, and making it, private, or saying why it cannot be used.

`default_home` is `LONGREAD_HOME`, else the platform's user data dir. `ensure_home` makes
the folder with mode 0o700 (it holds the full text of a person's books) or raises a
ConfigError that names the path and the fix: a file in its place or above it, a link to
nothing, a folder that cannot be made or written in.

It does not decide what is written inside (the library, indexes and caches do).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ConfigError

HOME_MODE = 0o700
"""The data dir's permissions: only its owner may list or read the books it holds."""
_HOME_FIX = "set LONGREAD_HOME (or pass --home) to a folder you can write to"


def default_home() -> Path:
    """The data dir: `LONGREAD_HOME`, else the platform's user data dir for longread."""
    explicit = os.environ.get("LONGREAD_HOME")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_data_path  # deferred: only needed without LONGREAD_HOME

    return user_data_path("longread", appauthor=False)


def ensure_home(home: Path) -> Path:
    """The data dir `home`, made (mode 0o700) if it is not there; ConfigError naming the path
    and the fix when it is a file, lies under a file, or cannot be made or written in.

    A folder that is already there keeps its permissions: it may be one the person chose
    and shares on purpose, and changing the mode of a folder longread did not make would
    be a surprise.
    """
    try:
        return _made_home(home)
    except OSError as error:  # a parent that cannot be searched, a read-only disk, ...
        reason = error.strerror or str(error)
        raise ConfigError(f"the data dir {home} cannot be made ({reason}); {_HOME_FIX}") from error


def _made_home(home: Path) -> Path:
    if home.is_dir():
        if not os.access(home, os.W_OK | os.X_OK):
            raise ConfigError(f"the data dir {home} is not writable; {_HOME_FIX}")
        return home
    if home.is_symlink():
        raise ConfigError(
            f"the data dir {home} is a link to {home.readlink()}, which is not a folder;"
            f" {_HOME_FIX}"
        )
    if home.exists():
        raise ConfigError(f"the data dir {home} is a file, not a folder; {_HOME_FIX}")
    blocker = next((p for p in home.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(
            f"the data dir {home} cannot be made: {blocker} is a file, not a folder; {_HOME_FIX}"
        )
    try:
        home.mkdir(mode=HOME_MODE, parents=True)
    except FileExistsError:
        if home.is_dir():  # made by another process in the meantime
            return home
        raise
    # mkdir's mode passes through the umask; the books' privacy must not depend on it.
    home.chmod(HOME_MODE)
    return home
