"""Limits on what a received attachment may cost before anything reads it: ZIP archives (entry
count, declared and actual uncompressed sizes, compression ratio, nested archives, unsafe names,
encryption) and XML (size, no DTD, no entities, no network, no file access). Every refusal is a
`Refusal` (socle/messaging/refusals.py) with the MDN code it maps to; nothing else escapes.
"""

from __future__ import annotations

import io
import lzma
import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from .refusals import Reason, Refusal


@dataclass(frozen=True)
class Limits:
    """What one attachment may hold. The defaults fit a few CDA/PDF documents of the size the
    record accepts (SOCLE_MAX_DOCUMENT_BYTES, 20 MiB) with room for the metadata."""

    max_archive_bytes: int = 48 * 1024 * 1024  # the ZIP as received
    max_entries: int = 64
    max_entry_bytes: int = 24 * 1024 * 1024  # one document, uncompressed
    max_total_bytes: int = 64 * 1024 * 1024  # every entry, uncompressed
    # uncompressed / compressed, checked above 1 MiB (text compresses ~10×; bombs 1000×)
    max_ratio: int = 100
    ratio_floor_bytes: int = 1024 * 1024
    max_xml_bytes: int = 4 * 1024 * 1024  # METADATA.XML
    max_name_length: int = 255


DEFAULT_LIMITS = Limits()

# zipfile, zlib, bz2 and lzma failures on corrupt or hostile archives
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    struct.error,
    ValueError,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    OverflowError,
    IndexError,
    KeyError,
)
_NESTED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a ZIP, whatever its name
_ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".7z", ".rar", ".bz2", ".xz", ".tar", ".jar")
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_name(name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """An archive entry's name as a relative POSIX path; refuses absolute names, drive
    letters, `..` components, control characters and overlong names."""
    if not name or len(name) > limits.max_name_length:
        raise Refusal(Reason.UNSAFE_PATH, "an entry name is empty or too long", name[:80])
    if any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        raise Refusal(Reason.UNSAFE_PATH, "an entry name has control characters", repr(name[:80]))
    path = name.replace("\\", "/")
    if path.startswith("/") or _DRIVE.match(path):
        raise Refusal(Reason.UNSAFE_PATH, "an entry name is absolute", name)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise Refusal(Reason.UNSAFE_PATH, "an entry name leaves the archive (..)", name)
    return posixpath.join(*parts)


@dataclass(frozen=True)
class Member:
    name: str  # the safe, normalised relative path
    data: bytes


def read_zip(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Member]:
    """Every file of a ZIP archive by its upper-cased name (XDM names are case-insensitive),
    within `limits`; raises `Refusal`. Sizes are checked as declared and again as read (a
    forged header does not get more bytes out than it declares)."""
    if not isinstance(data, bytes | bytearray):
        raise Refusal(Reason.NOT_A_ZIP, f"expected bytes, not {type(data).__name__}")
    if len(data) > limits.max_archive_bytes:
        raise Refusal(Reason.ZIP_BOMB, f"the archive is over {limits.max_archive_bytes} bytes")
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            infos = archive.infolist()
            _check_directory(infos, limits)
            return _read_members(archive, infos, limits)
    except Refusal:
        raise
    except _ZIP_ERRORS as exc:
        raise Refusal(
            Reason.NOT_A_ZIP, f"not a readable ZIP archive ({type(exc).__name__})"
        ) from None


def _check_directory(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    files = [i for i in infos if not i.is_dir()]
    if len(infos) > limits.max_entries:
        raise Refusal(Reason.TOO_MANY_ENTRIES, f"more than {limits.max_entries} entries")
    total = 0
    for info in files:
        if info.flag_bits & 0x1:
            raise Refusal(Reason.ENCRYPTED, "an entry is encrypted", info.filename[:80])
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise Refusal(Reason.UNSAFE_PATH, "an entry is a symbolic link", info.filename[:80])
        if info.file_size > limits.max_entry_bytes:
            raise Refusal(Reason.ZIP_BOMB, "an entry is too large", info.filename[:80])
        _check_ratio(info.filename, info.file_size, info.compress_size, limits)
        total += info.file_size
    if total > limits.max_total_bytes:
        raise Refusal(Reason.ZIP_BOMB, f"the entries hold over {limits.max_total_bytes} bytes")


def _check_ratio(name: str, size: int, compressed: int, limits: Limits) -> None:
    if size > limits.ratio_floor_bytes and size > limits.max_ratio * max(compressed, 1):
        raise Refusal(Reason.ZIP_BOMB, "an entry's compression ratio is too high", name[:80])


def _read_members(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: Limits
) -> dict[str, Member]:
    out: dict[str, Member] = {}
    total = 0
    for info in infos:
        if info.is_dir():
            safe_name(info.filename, limits)
            continue
        name = safe_name(info.filename, limits)
        key = name.upper()
        if key in out:
            raise Refusal(Reason.UNSAFE_PATH, "two entries have the same name", name)
        with archive.open(info) as stream:
            content = stream.read(min(info.file_size, limits.max_entry_bytes) + 1)
        if len(content) != info.file_size:
            raise Refusal(Reason.ZIP_BOMB, "an entry is not the size it declares", name)
        total += len(content)
        if total > limits.max_total_bytes:
            raise Refusal(Reason.ZIP_BOMB, f"the entries hold over {limits.max_total_bytes} bytes")
        if content.startswith(_NESTED_MAGIC) or name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise Refusal(Reason.NESTED_ARCHIVE, "an archive inside the archive", name)
        out[key] = Member(name, content)
    return out


# -- XML ----------------------------------------------------------------------------------------


class _NoResolver(etree.Resolver):  # type: ignore[misc]
    """Resolves any external DTD or entity to nothing: no file nor network is ever read."""

    def resolve(self, system_url: Any, public_id: Any, context: Any) -> Any:
        return self.resolve_string("", context)


_DOCTYPE_MARKS = tuple(
    m.encode(enc)
    for m in ("<!DOCTYPE", "<!ENTITY", "<!doctype", "<!entity")
    for enc in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


def parse_xml(data: bytes, limits: Limits = DEFAULT_LIMITS, where: str = "") -> Any:
    """The root element of a small XML document, parsed with no DTD, no entity expansion, no
    network and libxml2's default limits (no huge_tree); raises `Refusal`."""
    if len(data) > limits.max_xml_bytes:
        raise Refusal(Reason.XML_TOO_LARGE, f"the XML is over {limits.max_xml_bytes} bytes", where)
    if any(mark in data for mark in _DOCTYPE_MARKS):
        raise Refusal(Reason.XML_DTD, "a DOCTYPE or ENTITY declaration is not allowed", where)
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        remove_pis=True,
    )
    parser.resolvers.add(_NoResolver())
    try:
        root = etree.fromstring(bytes(data), parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise Refusal(
            Reason.XML_INVALID, f"not well-formed XML ({short_error(exc)})", where
        ) from None
    if root is None:
        raise Refusal(Reason.XML_INVALID, "empty XML document", where)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Refusal(Reason.XML_DTD, "a DOCTYPE is not allowed", where)
    return root


def short_error(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
