"""A minimal protobuf wire-format walker over a :class:`HeaderReader` (no generated code).

Length-delimited fields are yielded with their end offset; whatever the caller does not read of
them is skipped with a seek, so a reader can step over tensor data without reading it.
"""

from __future__ import annotations

from collections.abc import Iterator

from registry_build.formats.header import FormatError, HeaderReader

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def varint(reader: HeaderReader) -> int:
    """One base-128 varint."""
    value = 0
    for shift in range(0, 70, 7):
        byte = reader.read(1)[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise FormatError(f"varint longer than 10 bytes at offset {reader.pos}")


def fields(reader: HeaderReader, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(field, wire_type, value)`` up to offset ``end``; a length field yields its end.

    For a length-delimited field the caller reads what it needs of it; the walk then resumes at
    the field's end, so whatever the caller did not read is skipped.
    """
    while reader.pos < end:
        key = varint(reader)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError(f"field number 0 at offset {reader.pos}: not a protobuf message")
        if wire == VARINT:
            yield number, wire, varint(reader)
        elif wire in (I64, I32):
            reader.skip(8 if wire == I64 else 4)
        elif wire == LEN:
            length = varint(reader)
            stop = reader.pos + length
            if stop > end:
                raise FormatError(f"field {number} of {length} bytes runs past its message")
            yield number, wire, stop
            reader.seek(stop)
        else:
            raise FormatError(f"unknown protobuf wire type {wire} at offset {reader.pos}")
    if reader.pos != end:
        raise FormatError(f"message ends at offset {reader.pos}, expected {end}")


def text(reader: HeaderReader, stop: int) -> str:
    """The UTF-8 string from the current position up to offset ``stop``."""
    try:
        return reader.read(stop - reader.pos).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"string before offset {stop} is not UTF-8") from None
