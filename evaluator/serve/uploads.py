"""Streamed uploads: a multipart body is written to disk as it arrives, hashed on the way, cut off at its limit.

Nothing here buffers a whole body: each part's bytes go straight to a staging file while a sha256 is
computed, and the moment a file part passes its limit the reading stops (the rest of the body is never
read; the server closes the connection). The name a client sends for a file is only checked and shown,
never used as a path: a file is kept under its sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from evaluator.errors import UsageError

TEXT_FIELD_BYTES = 4096  # a form's text fields (the CSRF token) are short
MAX_TEXT_FIELDS = 8
MAX_NAME_CHARS = 128
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the parts
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]*$")


class UploadError(UsageError):
    """An upload refused as it arrived; ``status`` is the HTTP status that says why (400, 411, 413, 415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FilePart:
    """Where one file part of the body may go: its limit in bytes and the name ending it must have."""

    max_bytes: int
    suffix: str


@dataclass(frozen=True)
class StagedFile:
    """One file part, on disk under a random staging name, with its hash and the name the client gave."""

    path: Path
    sha256: str
    size: int
    client_name: str


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, StagedFile] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove every staged file (a refused form leaves nothing behind)."""
        for staged in self.files.values():
            staged.path.unlink(missing_ok=True)


def check_client_name(name: str, suffix: str) -> str:
    """The file name a client sent, refused unless it is a short plain name ending in ``suffix``."""
    if len(name) > MAX_NAME_CHARS:
        raise UploadError(f"the file name is {len(name)} characters long; use a name of at most {MAX_NAME_CHARS}")
    if "/" in name or "\\" in name or ".." in name or not _SAFE_NAME.match(name):
        raise UploadError(f"the file name {name[:40]!r} is not a plain name (letters, digits, spaces, . _ + - ( ) "
                          "only; no folders, no '..'); rename the file and upload it again")
    if not name.lower().endswith(suffix):
        raise UploadError(f"the file name {name!r} does not end in {suffix}; upload the {suffix} file itself")
    return name


class _Receiver:
    """The parser's callbacks: each part's bytes to a staging file or a short text field, limits enforced."""

    def __init__(self, staging: Path, parts: dict[str, FilePart]) -> None:
        self.staging, self.parts, self.form = staging, parts, UploadForm()
        self._header_field, self._header_value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._name, self._client_name = "", ""
        self._handle: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._size, self._text = 0, bytearray()
        self._path: Path | None = None

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self._begin, "on_header_field": self._field, "on_header_value": self._value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
                "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._size, self._text, self._hash = {}, 0, bytearray(), hashlib.sha256()

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            if self._name in self.parts:
                raise UploadError(f"the form field {self._name!r} must be a file")
            if len(self.form.fields) >= MAX_TEXT_FIELDS:
                raise UploadError("too many form fields")
            return
        part = self.parts.get(self._name)
        if part is None:
            raise UploadError(f"unexpected file field {self._name!r}; send {', '.join(self.parts)}")
        if self._name in self.form.files:
            raise UploadError(f"the file field {self._name!r} appears twice; send one file")
        self._client_name = check_client_name(filename.decode("utf-8", "replace"), part.suffix)
        self._path = self.staging / f".upload-{secrets.token_hex(8)}.part"
        self._handle = self._path.open("xb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self._size += len(chunk)
        if self._handle is None:
            if self._size > TEXT_FIELD_BYTES:
                raise UploadError(f"the form field {self._name!r} is longer than {TEXT_FIELD_BYTES} bytes")
            self._text += chunk
            return
        limit = self.parts[self._name].max_bytes
        if self._size > limit:
            raise UploadError(f"the file is larger than the {limit:,}-byte limit of this competition; make the "
                              "model smaller (fewer or lower-precision weights)", 413)
        self._hash.update(chunk)
        self._handle.write(chunk)

    def _end(self) -> None:
        if self._handle is None:
            self.form.fields[self._name] = self._text.decode("utf-8", "replace")
            return
        self._handle.close()
        assert self._path is not None
        self.form.files[self._name] = StagedFile(self._path, self._hash.hexdigest(), self._size, self._client_name)
        self._handle, self._path = None, None

    @property
    def unfinished(self) -> bool:
        return self._handle is not None

    def abandon(self) -> None:
        """An upload cut short: the part being written and every earlier one removed."""
        if self._handle is not None:
            self._handle.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self.form.discard()


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError("send the upload as multipart/form-data (a form, or curl -F model=@MODEL.onnx)", 415)
    return options[b"boundary"]


def declared_length(headers: dict[str, str], parts: dict[str, FilePart]) -> None:
    """A body that announces itself as too large is refused before a byte of it is read."""
    length = headers.get("content-length")
    allowed = sum(part.max_bytes for part in parts.values()) + MULTIPART_OVERHEAD
    if length is not None and length.isdigit() and int(length) > allowed:
        largest = max(part.max_bytes for part in parts.values())
        raise UploadError(f"the upload is {int(length):,} bytes; this competition accepts files up to "
                          f"{largest:,} bytes; make the model smaller", 413)


async def receive_form(content_type: str, chunks: AsyncIterator[bytes], staging: Path,
                       parts: dict[str, FilePart]) -> UploadForm:
    """Parse a multipart body as it streams in; every file part lands in ``staging`` under a random name."""
    staging.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(staging, parts)
    parser = MultipartParser(_boundary(content_type), receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        receiver.abandon()
        raise
    except (FormParserError, ValueError) as exc:  # a malformed body
        receiver.abandon()
        raise UploadError(f"the upload is not a well-formed multipart body ({type(exc).__name__}); send it again "
                          "as a form") from None
    except BaseException:  # the client went away mid-upload, or the server stops: no partial file stays
        receiver.abandon()
        raise
    if receiver.unfinished:  # the body ended inside a file part
        receiver.abandon()
        raise UploadError("the upload ended before the file did; send it again")
    return receiver.form


def keep(staged: StagedFile, folder: Path, name: str) -> Path:
    """Move a staged file to ``folder/name`` (the caller names it after its sha256); an existing copy wins."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if target.exists():
        staged.path.unlink(missing_ok=True)
        return target
    os.replace(staged.path, target)
    with contextlib.suppress(OSError):
        target.chmod(0o640)
    return target
