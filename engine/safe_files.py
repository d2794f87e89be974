"""Reading files a user names, or finds in a watched directory, without hanging on them.

A path can name anything: a FIFO (opening it blocks until a writer comes), a device
(``/dev/zero`` never ends), a directory, or a file far larger than it should be.
:func:`open_regular_file` opens regular files only, never blocks while opening, and
refuses one over a size limit before reading a byte: the kind is checked with ``stat``
before the open (a FIFO is never opened) and again on the open descriptor (the path
may have been swapped in between). The refusals are :class:`OSError` subclasses, so
callers that already report "cannot read" report these too.

:func:`in_daemon_thread` runs such a read off the event loop in a thread that cannot
keep the process alive: ``asyncio.to_thread``'s pool threads are joined at exit, so a
read stuck in the kernel (a hung network file system) would outlive a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")

_KINDS = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFileError(OSError):
    """A file refused before reading: the message says why."""


class NotARegularFileError(UnreadableFileError):
    pass


class FileTooLargeError(UnreadableFileError):
    pass


def file_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a directory"``, ... for ``st_mode``."""
    return next((kind for is_kind, kind in _KINDS if is_kind(mode)), "not a regular file")


def size_text(size: int) -> str:
    """Bytes as people read them: ``512 bytes``, ``1.5 MB``."""
    if size < 1024:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024  # type: ignore[assignment]
        if size < 1024 or unit == "TB":
            return f"{size:.3g} {unit}"
    raise AssertionError("unreachable")


def _check(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFileError(f"not a regular file: it is {file_kind(st.st_mode)}")
    if st.st_size > max_bytes:
        raise FileTooLargeError(
            f"{size_text(st.st_size)} ({st.st_size:,} bytes), larger than the "
            f"{size_text(max_bytes)} allowed"
        )


def open_regular_file(path: str | os.PathLike[str], max_bytes: int) -> BinaryIO:
    """Open a regular file of at most ``max_bytes`` for binary reading.

    :class:`NotARegularFileError` or :class:`FileTooLargeError` otherwise, other
    :class:`OSError` as ``open`` raises them (missing, permission denied).
    """
    _check(os.stat(path), max_bytes)
    # O_NONBLOCK: if a FIFO took the file's place since the stat, opening it returns at
    # once instead of waiting for a writer (it changes nothing for a regular file).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check(os.fstat(fd), max_bytes)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular_file`)."""
    with open_regular_file(path, max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise FileTooLargeError(f"larger than the {size_text(max_bytes)} allowed")
    return data


class CappedReader(io.RawIOBase):
    """Reads ``stream`` (a decompressing one, say) and fails once more than ``max_bytes``
    came out of it: a small gzip file can expand to far more than its size."""

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        super().__init__()
        self._stream = stream
        self._max_bytes = max_bytes
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view:
            data = self._stream.read(len(view))
            view[: len(data)] = data
        self._read += len(data)
        if self._read > self._max_bytes:
            raise FileTooLargeError(
                f"more than {size_text(self._max_bytes)} once decompressed, the most allowed"
            )
        return len(data)


async def in_daemon_thread(func: Callable[..., T], *args: object) -> T:
    """``func(*args)`` in a new daemon thread, awaited; cancelling abandons the call.

    Like ``asyncio.to_thread`` (the caller's context variables go along), except that a
    call that never returns cannot keep the process from exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody waits any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = context.run(func, *args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to tell
            loop.call_soon_threadsafe(settle, result, error)

    name = f"daemon:{getattr(func, '__name__', 'call')}"
    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
