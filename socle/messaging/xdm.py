"""IHE XDM media (ITI TF-1 §16, TF-3 §4.3): the `IHE_XDM.ZIP` attachment MSSanté messages carry
their documents in (fr-documents §3.3).

    INDEX.HTM                        what the archive holds, for a person
    README.TXT                       who made it
    IHE_XDM/SUBSET01/METADATA.XML    the ebRIM SubmitObjectsRequest (`ebrim.py`)
    IHE_XDM/SUBSET01/DOC0001.XML     the documents, named by the URI slot of their entry

`read_xdm` opens any ZIP that follows this layout within the safety limits (`safety.py`) and
returns each subset with its documents, the bytes checked against the entry's hash and size;
`write_xdm` produces the same layout. Names are matched without regard to case, as XDM media
made on other systems name them either way.
"""

from __future__ import annotations

import dataclasses
import html
import io
import posixpath
import zipfile

from .ebrim import read_metadata, write_metadata
from .refusals import Reason, Refusal
from .safety import DEFAULT_LIMITS, Limits, Member, read_zip, safe_name
from .xds import DocumentEntry, SubmissionSet, XdmDocument, XdmPackage, sha1_hex

ROOT = "IHE_XDM"
METADATA = "METADATA.XML"
FILE_NAME = "IHE_XDM.ZIP"
EXTENSIONS = {
    "text/xml": "XML",
    "application/xml": "XML",
    "application/hl7-v3+xml": "XML",
    "application/pdf": "PDF",
    "text/plain": "TXT",
    "image/jpeg": "JPG",
}


def read_xdm(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[XdmPackage]:
    """Every subset of an XDM archive, in the order of their directory names; raises `Refusal`
    (unsafe archive or XML, not XDM, a document missing or not matching its hash and size)."""
    members = read_zip(data, limits)
    subsets = sorted(
        key.removesuffix("/" + METADATA)
        for key in members
        if key.startswith(ROOT + "/") and key.endswith("/" + METADATA) and key.count("/") == 2
    )
    if not subsets:
        raise Refusal(Reason.NOT_XDM, f"no {ROOT}/<subset>/{METADATA} in the archive")
    return [_subset(members, subset, limits) for subset in subsets]


def _subset(members: dict[str, Member], subset: str, limits: Limits) -> XdmPackage:
    where = members[f"{subset}/{METADATA}"].name
    submission, entries = read_metadata(members[f"{subset}/{METADATA}"].data, limits, where)
    documents = []
    for entry in entries:
        try:
            path = safe_name(posixpath.join(subset, entry.uri), limits).upper()
        except Refusal as refusal:
            raise Refusal(
                Reason.UNSAFE_PATH, "a document URI leaves the archive", entry.uri
            ) from refusal
        member = members.get(path)
        if member is None:
            raise Refusal(
                Reason.METADATA_INVALID, "a document named by URI is not in the archive", entry.uri
            )
        if len(member.data) != entry.size:
            raise Refusal(
                Reason.CONTENT_MISMATCH, "a document is not the size its entry says", entry.uri
            )
        if sha1_hex(member.data) != entry.hash:
            raise Refusal(
                Reason.CONTENT_MISMATCH, "a document's SHA-1 is not its entry's hash", entry.uri
            )
        documents.append(XdmDocument(entry, member.data))
    return XdmPackage(submission, tuple(documents))


def document_file_name(index: int, mime_type: str) -> str:
    """`DOC0001.XML`, `DOC0002.PDF`…: the 8.3 names XDM media use."""
    return f"DOC{index:04d}.{EXTENSIONS.get(mime_type, 'BIN')}"


def package(submission: SubmissionSet, documents: list[tuple[DocumentEntry, bytes]]) -> XdmPackage:
    """A subset from entries and their bytes: each entry gets its file name, hash and size."""
    out = []
    for i, (entry, content) in enumerate(documents, start=1):
        out.append(
            XdmDocument(
                dataclasses.replace(
                    entry,
                    uri=document_file_name(i, entry.mime_type),
                    hash=sha1_hex(content),
                    size=len(content),
                    entry_id=f"Document{i:02d}",
                ),
                content,
            )
        )
    return XdmPackage(submission, tuple(out))


def write_xdm(packages: list[XdmPackage], sender: str = "Socle") -> bytes:
    """The XDM archive of these subsets (SUBSET01, SUBSET02…), deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.TXT", _readme(sender))
        archive.writestr("INDEX.HTM", _index(packages))
        for n, pkg in enumerate(packages, start=1):
            subset = f"{ROOT}/SUBSET{n:02d}"
            entries = [d.entry for d in pkg.documents]
            archive.writestr(f"{subset}/{METADATA}", write_metadata(pkg.submission_set, entries))
            for doc in pkg.documents:
                archive.writestr(f"{subset}/{doc.entry.uri}", doc.content)
    return buffer.getvalue()


def _readme(sender: str) -> str:
    return (
        "IHE XDM media (IHE ITI TF-1 section 16)\r\n"
        f"Created by: {sender}\r\n"
        "Content: IHE_XDM/<subset>/METADATA.XML and the documents it lists.\r\n"
        "Open INDEX.HTM to see the documents.\r\n"
    )


def _index(packages: list[XdmPackage]) -> str:
    rows = "".join(
        f'<li><a href="{ROOT}/SUBSET{n:02d}/{html.escape(d.entry.uri)}">'
        f"{html.escape(d.entry.title or d.entry.uri)}</a></li>"
        for n, pkg in enumerate(packages, start=1)
        for d in pkg.documents
    )
    return (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
        "<title>Documents</title></head><body><h1>Documents</h1>"
        f"<ul>{rows}</ul></body></html>"
    )
