"""Where a command's output goes (`-o`): stdout, or a file written so that nothing is ever destroyed.

* `-o -` (or no `-o`) writes to stdout; `-o ""` is an error.
* A regular file is written atomically: a temporary file in the same folder, then a rename, so a
  reader never sees half a file and a failed write leaves the old one as it was. An existing file
  keeps its permission bits.
* A symlink is written through: the file it points to is replaced, the link stays a link.
* A device or a pipe (`/dev/stdout`, `/dev/null`, a FIFO) is written directly; it cannot be renamed over.
* A read-only file is refused, by its permission bits, even for root (who could otherwise overwrite it).
Every target is checked before any work starts (`check_output`), so a long sweep never ends in an
unwritable path.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from vitcost.errors import VitcostError

STDOUT = "-"


def _resolve(value: str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(value)))


def check_output(value: str | os.PathLike | None, suffixes: tuple[str, ...] = ()) -> str | None:
    """Validate an `-o` value before the work: None or "-" mean stdout; a file must be writable where
    it is (its folder exists, it is not a folder, it is not read-only) and, when `suffixes` is given
    and the name has an ending, end in one of them. Returns the value as text (None for stdout)."""
    if value is None:
        return None
    text = os.fspath(value)
    if text == STDOUT:
        return None
    if not text.strip():
        raise VitcostError("-o needs a file name, or - for stdout.")
    real = _resolve(text)
    if suffixes and Path(text).suffix and not text.lower().endswith(suffixes) and not _is_special(real):
        raise VitcostError(f"cannot write {text}: this output is {' or '.join(suffixes)}; "
                           f"name the file accordingly.")
    if real.is_dir():
        raise VitcostError(f"cannot write {text}: it is a folder.")
    if not real.parent.is_dir():
        raise VitcostError(f"cannot write {text}: folder {real.parent} does not exist.")
    if real.exists() and _is_regular(real) and not real.stat().st_mode & 0o222:
        raise VitcostError(f"cannot write {text}: the file is read-only.")
    return text


def _is_regular(p: Path) -> bool:
    return stat.S_ISREG(p.stat().st_mode)


def _is_special(p: Path) -> bool:
    return p.exists() and not p.is_dir() and not _is_regular(p)


def write_output(value: str | os.PathLike | None, data: bytes) -> None:
    """Write `data` to stdout (None or "-") or to the file `value` (see the module docstring)."""
    text = check_output(value)
    if text is None:
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a text stream standing in for stdout (tests, notebooks)
            sys.stdout.write(data.decode("utf-8", errors="replace"))
            return
        sys.stdout.flush()
        buffer.write(data)
        buffer.flush()
        return
    real = _resolve(text)
    try:
        if _is_special(real):
            with open(real, "wb") as f:
                f.write(data)
            return
        mode = real.stat().st_mode & 0o7777 if real.exists() else None
        _atomic(real, data, mode)
    except OSError as e:
        raise VitcostError(f"cannot write {text}: {e.strerror or e}.") from None


def _atomic(path: Path, data: bytes, mode: int | None) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is None:  # a new file gets the mode a plain open() would give it (mkstemp makes it 0600)
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["STDOUT", "check_output", "write_output"]
