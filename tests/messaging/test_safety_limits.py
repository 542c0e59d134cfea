"""What a hostile attachment gets: zip bombs, too many entries, nested archives, names leaving
the archive, encryption, DTDs and entities, oversize XML — each a typed refusal with its MDN
code; and fuzzed archives and XML never raise anything but a `Refusal`."""

from __future__ import annotations

import contextlib
import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.messaging.ebrim import read_metadata
from socle.messaging.refusals import ErrorCode, Reason, Refusal
from socle.messaging.safety import Limits, parse_xml, read_zip, safe_name
from socle.messaging.xdm import package, read_xdm, write_xdm
from socle.messaging.xds import DocumentEntry, SubmissionSet


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _refused(fn, *args) -> Refusal:
    with pytest.raises(Refusal) as refused:
        fn(*args)
    assert refused.value.error is ErrorCode.OTHER  # safety refusals are 906
    return refused.value


def test_a_zip_bomb_is_refused_by_its_ratio_before_it_is_inflated():
    bomb = _zip({"IHE_XDM/SUBSET01/DOC0001.XML": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    assert _refused(read_zip, bomb).reason is Reason.ZIP_BOMB


def test_sizes_and_counts_are_bounded():
    small = Limits(max_entry_bytes=1000, max_total_bytes=1500, max_entries=3)
    assert _refused(read_zip, _zip({"a": b"x" * 1001}), small).reason is Reason.ZIP_BOMB
    two = _zip({"a": b"x" * 800, "b": b"y" * 800})
    assert _refused(read_zip, two, small).reason is Reason.ZIP_BOMB
    many = _zip({f"f{i}": b"" for i in range(4)})
    assert _refused(read_zip, many, small).reason is Reason.TOO_MANY_ENTRIES
    assert _refused(read_zip, b"x" * 10, Limits(max_archive_bytes=5)).reason is Reason.ZIP_BOMB


def test_a_size_that_lies_gets_no_more_bytes_out():
    data = bytearray(_zip({"a.txt": b"A" * 5000}, zipfile.ZIP_DEFLATED))
    # shrink the declared size in the central directory and the local header
    forged = bytes(data).replace((5000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    refusal = _refused(read_zip, forged)
    assert refusal.reason in (Reason.ZIP_BOMB, Reason.NOT_A_ZIP)


def test_nested_archives_are_refused():
    inner = _zip({"x.pdf": b"%PDF"})
    assert _refused(read_zip, _zip({"doc.bin": inner})).reason is Reason.NESTED_ARCHIVE
    assert _refused(read_zip, _zip({"docs.zip": b"not a zip"})).reason is Reason.NESTED_ARCHIVE


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "\\\\server\\share", "C:\\x.txt", "a\x00b"],
)
def test_names_that_leave_the_archive_are_refused(name):
    assert _refused(safe_name, name).reason is Reason.UNSAFE_PATH


def test_names_are_normalised():
    assert safe_name("IHE_XDM\\SUBSET01\\./DOC0001.XML") == "IHE_XDM/SUBSET01/DOC0001.XML"


def test_an_encrypted_entry_is_refused():
    data = bytearray(_zip({"a.txt": b"secret"}, zipfile.ZIP_STORED))
    # general-purpose flag bit 0 (encrypted) in the local header and the central directory
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(sig)
        offset = at + (6 if sig == b"PK\x03\x04" else 8)
        data[offset] |= 1
    assert _refused(read_zip, bytes(data)).reason is Reason.ENCRYPTED


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<lolz>&lol2;</lolz>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"""
UTF16_DTD = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r SYSTEM "http://x/"><r/>'.encode(
    "utf-16"
)


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL, UTF16_DTD])
def test_dtds_and_entities_are_refused(xml):
    assert _refused(parse_xml, xml).reason is Reason.XML_DTD


def test_oversize_and_broken_xml_are_refused():
    assert _refused(parse_xml, b"<r>" + b"x" * 100 + b"</r>", Limits(max_xml_bytes=50)).reason is (
        Reason.XML_TOO_LARGE
    )
    assert _refused(parse_xml, b"<r><a></r>").reason is Reason.XML_INVALID
    assert _refused(read_metadata, b"<not-ebrim/>").reason is Reason.NOT_XDM


def _valid_archive() -> bytes:
    entry = DocumentEntry("2.25.1", "application/pdf", "", "", 0, title="Lettre")
    return write_xdm([package(SubmissionSet("2.25.2", "1.2.3"), [(entry, b"%PDF-1.4 x")])])


VALID = _valid_archive()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600) | st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=400)))
def test_random_bytes_are_refused_never_crash(data):
    with pytest.raises(Refusal):
        read_xdm(data)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_damaged_archive_is_read_or_refused_never_crash(data):
    damaged = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    with contextlib.suppress(Refusal):
        read_xdm(bytes(damaged[:cut] if data.draw(st.booleans()) else damaged))


XML_PIECES = st.sampled_from(
    [
        "<",
        ">",
        "</",
        "/>",
        "&amp;",
        "&x;",
        "<!DOCTYPE a>",
        "<![CDATA[",
        "]]>",
        "<?xml version='1.0'?>",
        '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">',
        '<rim:RegistryObjectList xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">',
        "<rim:RegistryPackage id='s'>",
        "<rim:ExtrinsicObject id='d'>",
        "<rim:Slot name='size'><rim:ValueList><rim:Value>",
        "</rim:Value></rim:ValueList></rim:Slot>",
        "é",
        "\x00",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(XML_PIECES | st.text(max_size=5), max_size=30).map("".join))
def test_fuzzed_metadata_is_refused_never_crash(text):
    with contextlib.suppress(Refusal):
        read_metadata(text.encode("utf-8", "surrogatepass"))
