"""Bounded, counted reads of a model file's header: never the weights.

:class:`HeaderReader` reads through a small buffer with ``os.pread`` and counts every byte it
takes from disk; a reader that would pass its budget (:data:`READ_BUDGET`, 1 MiB by default)
raises :class:`HeaderTooLarge` instead of reading on. Skipping (:meth:`HeaderReader.skip`) moves
the position without reading, so a reader can jump over a tensor's data.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime.errors import RegistryError

READ_BUDGET = 1 << 20
_CHUNK = 16 << 10
_U64 = struct.Struct("<Q")


class FormatError(RegistryError, ValueError):
    """Raised when a model file's header is damaged, truncated, or not the format its name says."""


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """The JSON object in ``raw``, read from a source tree (``what`` names it): not JSON, nested
    too deeply for the parser, or not an object is a FormatError, never a RecursionError."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise FormatError(
            f"{what} nests arrays or objects too deeply to read: a damaged or hostile file"
        ) from None
    if not isinstance(doc, dict):
        raise FormatError(f"{what} is JSON {type(doc).__name__}, expected an object")
    return doc


class HeaderTooLarge(FormatError):
    """Raised when a header runs past the read budget; readers keep what they read so far."""


class ReadMeter:
    """Opens header readers with one budget each and adds up the bytes they read."""

    def __init__(self, budget: int = READ_BUDGET) -> None:
        self.budget = budget
        self.files = 0
        self.total = 0
        self.largest = 0

    def open(self, path: Path) -> HeaderReader:
        """A reader of ``path`` (use it in ``with``); its bytes count here when it closes."""
        return HeaderReader(path, self.budget, self)

    def record(self, bytes_read: int) -> None:
        """Count one closed reader's bytes."""
        self.files += 1
        self.total += bytes_read
        self.largest = max(self.largest, bytes_read)


class HeaderReader:
    """Reads of one file within a byte budget; ``bytes_read`` counts what came from disk."""

    def __init__(
        self, path: Path, budget: int = READ_BUDGET, meter: ReadMeter | None = None
    ) -> None:
        self.path = path
        self.budget = budget
        self.meter = meter
        self.bytes_read = 0
        self.pos = 0
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._buf = b""
        self._buf_at = 0

    def __enter__(self) -> HeaderReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.close(self._fd)
        if self.meter is not None:
            self.meter.record(self.bytes_read)

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes; FormatError at end of file, HeaderTooLarge past the budget."""
        start = self.pos - self._buf_at
        if start >= 0 and start + n <= len(self._buf):
            self.pos += n
            return self._buf[start : start + n]
        if self.pos + n > self.size:
            raise FormatError(
                f"truncated: needs {n} bytes at offset {self.pos} but the file ends at {self.size}"
            )
        allowed = self.budget - self.bytes_read
        if n > allowed:
            raise HeaderTooLarge(f"header is larger than the {self.budget}-byte read budget")
        want = min(max(n, _CHUNK), allowed, self.size - self.pos)
        self._buf = os.pread(self._fd, want, self.pos)
        self._buf_at = self.pos
        if len(self._buf) < n:
            raise FormatError(f"file shrank while being read (at offset {self.pos})")
        self.bytes_read += len(self._buf)
        self.pos += n
        return self._buf[:n]

    def skip(self, n: int) -> None:
        """Move ``n`` bytes forward without reading them; FormatError if that passes the end."""
        if self.pos + n > self.size:
            raise FormatError(
                f"truncated: skips {n} bytes at offset {self.pos} but the file ends at {self.size}"
            )
        self.pos += n

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` length-prefixed (u64 little-endian) strings, walking the buffer."""
        unpack = _U64.unpack_from
        while count:
            buf, at, skipped = self._buf, self.pos - self._buf_at, 0
            last = len(buf) - 8  # the last offset at which a length still fits
            if at >= 0:
                for skipped in range(count):  # noqa: B007 (read after the loop)
                    if at > last:
                        break
                    (length,) = unpack(buf, at)
                    if at + 8 + length > last + 8:
                        break
                    at += 8 + length
                else:
                    skipped = count
                self.pos = self._buf_at + at
            count -= skipped
            if count:  # the next string starts or ends past the buffer: refill
                self.skip(_U64.unpack(self.read(8))[0])
                count -= 1

    def seek(self, pos: int) -> None:
        """Move to absolute offset ``pos``; FormatError if it is negative."""
        if pos < 0:
            raise FormatError(f"points before the start of the file (offset {pos})")
        self.pos = pos
