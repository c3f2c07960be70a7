"""multipart/form-data read into memory, bounded: text fields and uploaded files, nothing written to disk.

python-multipart (the `serve` extra) parses the stream; the gate has already bounded the whole body.
Each text field is at most a prompt's worth of UTF-8, each file at most an init image's size; the
part count is bounded, and files may come only under the names the route expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffcli.plan.init_image import MAX_BYTES
from diffcli.serve.errors import RequestError
from diffcli.serve.limits import MAX_FIELD_CHARS, MAX_PROMPT_CHARS

MAX_PARTS = 64
MAX_TEXT_BYTES = MAX_PROMPT_CHARS * 4  # a prompt of 16,384 characters in UTF-8


@dataclass
class Form:
    """A form's text fields (one value each) and files (every upload under a name, in order)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)


class _Collector:
    """python-multipart's callbacks: each part's name, whether it is a file, and its bytes, in memory."""

    def __init__(self, file_names: frozenset[str]) -> None:
        self.file_names = file_names
        self.form = Form()
        self.parts = 0
        self._header = [b"", b""]
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._data = bytearray()
        self.ended = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise RequestError(f"the form has more than {MAX_PARTS} parts", code="invalid_form")
        self._disposition, self._data = b"", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def on_header_end(self) -> None:
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        raw = options.get(b"name")
        name = raw.decode("utf-8", "replace") if raw is not None else ""
        if not name or len(name) > MAX_FIELD_CHARS or not name.isprintable():
            raise RequestError("a form part has no usable name (Content-Disposition: form-data; name=...)",
                               code="invalid_form")
        self._name, self._is_file = name, b"filename" in options
        if self._is_file and name not in self.file_names:
            raise RequestError(f"{name}: not a file field here (files: {', '.join(sorted(self.file_names))})",
                               param=name)
        if not self._is_file and name in self.form.fields:
            raise RequestError(f"{name}: given more than once", param=name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        limit = MAX_BYTES if self._is_file else MAX_TEXT_BYTES
        if len(self._data) + end - start > limit:
            what = f"larger than {MAX_BYTES // 2**20} MB, not read" if self._is_file else "too long"
            raise RequestError(f"{self._name}: {what}", param=self._name)
        self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self.form.files.setdefault(self._name, []).append(bytes(self._data))
            return
        try:
            self.form.fields[self._name] = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(f"{self._name}: not UTF-8 text", param=self._name) from None

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}


async def read_form(request: Any, file_names: frozenset[str]) -> Form:
    """The request's multipart form, streamed into memory; anything else, or a malformed form, is a 400."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise RequestError("the body must be multipart/form-data (with a boundary), as OpenAI's image edits are",
                           code="invalid_form")
    _quiet_parser_log()
    collector = _Collector(file_names)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        collector.ended = False
    if not collector.ended:
        raise RequestError("the body is not valid multipart/form-data (malformed or cut short)", code="invalid_form")
    return collector.form


def _quiet_parser_log() -> None:
    """python-multipart logs each malformed form as a warning before it raises; with no handler configured Python
    prints it on the server's stderr. The client gets the 400; the server's log says nothing more."""
    import logging

    parser_log = logging.getLogger("python_multipart")
    if not parser_log.handlers:
        parser_log.addHandler(logging.NullHandler())
        parser_log.propagate = False
