"""Where an HTTP/1.1 request ends, from the bytes that have arrived: what lets run-prod's main loop gather whole requests.

:func:`frame` looks only at the framing (the end of the headers, ``Content-Length``, chunked encoding): it
says whether the first request in the bytes has wholly arrived, and how long it is. It parses nothing
else: a request whose framing it cannot read simply (two lengths, a length and chunked, a bad chunk
size, a line feed without carriage return) is said to be whole, so that gunicorn's parser, which answers
such requests with a 400, sees it at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["Framing", "Refused", "frame"]

_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_TRANSFER_ENCODING = re.compile(rb"^transfer-encoding:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_EXPECT_CONTINUE = re.compile(rb"^expect:[ \t]*100-continue[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")
#: the longest chunk-size line read (size and extensions)
_CHUNK_LINE = 1024


class Refused(Exception):
    """The request is refused from its framing: ``status`` (431, 413 or 400) and a message for the client."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Framing:
    """What the bytes that have arrived hold of their first request."""

    #: the request's length in bytes if it has wholly arrived, else ``None``
    length: int | None
    #: ``"headers"`` while its headers are arriving, then ``"body"``
    phase: str
    #: its method and path (``None`` while its headers are arriving, or for a target not read simply)
    route: tuple[str, str] | None = None
    #: the client waits for ``100 Continue`` before it sends the body
    expects_continue: bool = False


def frame(data: bytes | bytearray, *, max_header_bytes: int, max_body_bytes: int) -> Framing:
    """The framing of the first request in ``data``.

    Raises:
        Refused: its headers are over ``max_header_bytes``, its body (announced or chunked so far) over
            ``max_body_bytes``, or a chunk's size line is not a size.

    Example:
        >>> frame(b"GET /predict?a=1 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET", max_header_bytes=8192, max_body_bytes=100)
        Framing(length=38, phase='body', route=('GET', '/predict'), expects_continue=False)
        >>> frame(b"POST /predict HTTP/1.1\\r\\nContent-Length: 10\\r\\n\\r\\n{}", max_header_bytes=8192, max_body_bytes=100).length is None
        True
    """
    end, gap = data.find(b"\r\n\r\n"), 4
    bare = data.find(b"\n\n")
    if bare >= 0 and (end < 0 or bare < end):
        return Framing(len(data), "body")  # malformed: gunicorn's parser answers it
    if end < 0:
        if len(data) > max_header_bytes:
            raise Refused("431 Request Header Fields Too Large", f"the request headers are over {max_header_bytes} bytes")
        return Framing(None, "headers")
    if end > max_header_bytes:
        raise Refused("431 Request Header Fields Too Large", f"the request headers are over {max_header_bytes} bytes")
    head = bytes(data[:end])
    route = _route(head)
    start = end + gap
    encodings = _TRANSFER_ENCODING.findall(head)
    lengths = _CONTENT_LENGTH.findall(head)
    if encodings:
        if lengths or len(encodings) > 1 or not encodings[0].lower().endswith(b"chunked"):
            return Framing(len(data), "body", route)  # smuggling-shaped or unknown: gunicorn refuses it
        length = _chunked_end(data, start, max_body_bytes)
        return Framing(length, "body", route, length is None and bool(_EXPECT_CONTINUE.search(head)))
    if not lengths:
        return Framing(start, "body", route)
    if len(set(lengths)) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 15:
        return Framing(len(data), "body", route)
    size = int(lengths[0])
    if size > max_body_bytes:
        raise Refused("413 Request Entity Too Large", f"the request body is over {max_body_bytes} bytes")
    whole = len(data) >= start + size
    return Framing(start + size if whole else None, "body", route, not whole and bool(_EXPECT_CONTINUE.search(head)))


def _route(head: bytes) -> tuple[str, str] | None:
    """The method and (decoded) path of the request line; ``None`` unless the target is a path (origin form)."""
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) != 3 or not line[1].startswith(b"/"):
        return None
    path = line[1].split(b"?", 1)[0]
    return line[0].decode("latin-1"), unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")


def _chunked_end(data: bytes | bytearray, at: int, max_body_bytes: int) -> int | None:
    """Where the chunked body starting at ``at`` ends (after its trailers), or ``None`` if it is still arriving."""
    size_total = 0
    while True:
        line_end = data.find(b"\r\n", at, at + _CHUNK_LINE)
        if line_end < 0:
            if len(data) - at < _CHUNK_LINE:
                return None
            raise Refused("400 Bad Request", f"a chunk size line is over {_CHUNK_LINE} bytes")
        size_text = bytes(data[at:line_end]).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise Refused("400 Bad Request", f"the chunk size {size_text[:20].decode('latin-1')!r} is not a hexadecimal number")
        size = int(size_text, 16)
        size_total += size
        if size_total > max_body_bytes:
            raise Refused("413 Request Entity Too Large", f"the request body is over {max_body_bytes} bytes")
        at = line_end + 2
        if size == 0:
            if data[at : at + 2] == b"\r\n":
                return at + 2
            trailers = data.find(b"\r\n\r\n", at)
            return None if trailers < 0 else trailers + 4
        if len(data) < at + size + 2:
            return None
        if data[at + size : at + size + 2] != b"\r\n":
            raise Refused("400 Bad Request", f"a chunk of {size} bytes is not followed by CRLF")
        at += size + 2
