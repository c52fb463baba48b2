"""Read the elements of a top-level JSON array one at a time, without loading the whole file.

The standard decoder reads one element from a buffer that holds at least that element; the
buffer grows only while an element is incomplete, so memory stays around the largest element.
An element that is not valid JSON ends the stream (the rest of the array cannot be located
reliably): `MalformedStream` says where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CHUNK_CHARS = 1 << 20
_WHITESPACE = " \t\r\n"
_NUMBER_CHARS = frozenset("0123456789.eE+-")


class MalformedStream(ValueError):
    def __init__(self, message: str, element: int):
        super().__init__(message)
        self.element = element


def iter_json_array(stream: IO[str], chunk_chars: int = CHUNK_CHARS) -> Iterator[Any]:
    """Yield each element of the JSON array in `stream` (a text file)."""
    reader = _Buffer(stream, chunk_chars)
    if reader.next_significant() != "[":
        raise MalformedStream("the file is not a JSON array (expected '[' first)", 0)
    reader.pos += 1
    element = 0
    if reader.next_significant() == "]":
        return
    while True:
        yield reader.decode_value(element)
        element += 1
        separator = reader.next_significant()
        reader.pos += 1
        if separator == "]":
            return
        if separator != ",":
            found = "the end of the file" if separator is None else repr(separator)
            raise MalformedStream(f"expected ',' or ']' after element {element - 1}, found {found}", element)


class _Buffer:
    def __init__(self, stream: IO[str], chunk_chars: int):
        self.stream = stream
        self.chunk = chunk_chars
        self.text = ""
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()

    def _more(self, at_least: int) -> bool:
        """Append at least `at_least` characters (fewer at the end of the file); False at EOF."""
        if self.eof:
            return False
        self.text = self.text[self.pos :]
        self.pos = 0
        data = self.stream.read(max(at_least, self.chunk))
        if not data:
            self.eof = True
            return False
        self.text += data
        return True

    def next_significant(self) -> str | None:
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._more(self.chunk):
                return None

    def decode_value(self, element: int) -> Any:
        if self.next_significant() is None:
            raise MalformedStream(f"the file ends inside the array (before element {element})", element)
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # Incomplete or invalid: read as much again (amortised linear) and retry; at EOF it is invalid.
                if not self._more(len(self.text) - self.pos):
                    raise MalformedStream(f"element {element} is not valid JSON ({exc.msg})", element) from None
                continue
            if not self.eof and self._may_continue(value, self.text[end:]):
                # A number at the buffer's end ("-0" of "-0.5e3") may continue in the next chunk.
                if self._more(self.chunk):
                    continue
            self.pos = end
            return value

    @staticmethod
    def _may_continue(value: Any, rest: str) -> bool:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return is_number and all(c in _NUMBER_CHARS for c in rest)


def load_json_file(file: Path) -> Any:
    """One whole JSON file (a run or a log); RecordError with the reason when it cannot be read."""
    from .model import RecordError

    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"could not be read ({exc})") from None
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None
