"""Over HTTP: base64 with line breaks keeps its bytes; Attachment size/hash must match data."""

from __future__ import annotations

import base64
import hashlib
import textwrap

from .helpers import assert_outcome, create, patient

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"\n%%EOF\n"


def _sha1_b64(raw: bytes) -> str:
    return base64.b64encode(hashlib.sha1(raw).digest()).decode()


def _media(pid: str, **attachment) -> dict:
    return {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "content": {"contentType": "application/pdf", **attachment},
    }


def test_binary_with_line_breaks_keeps_its_bytes(client):
    wrapped = "\r\n".join(textwrap.wrap(base64.b64encode(PDF).decode(), 76)) + "\n"
    created = create(
        client, {"resourceType": "Binary", "contentType": "application/pdf", "data": wrapped}
    )
    got = client.get(f"/Binary/{created['id']}", headers={"Accept": "application/pdf"})
    assert got.status_code == 200
    assert got.content == PDF


def test_space_inside_a_quad_is_refused(client):
    text = base64.b64encode(PDF).decode()
    broken = text[:6] + " " + text[6:]
    r = client.post(
        "/Binary", json={"resourceType": "Binary", "contentType": "application/pdf", "data": broken}
    )
    assert_outcome(r, 400, expression="Binary.data", contains="base64Binary")


def test_attachment_size_and_hash_must_match_data(client):
    pid = create(client, patient())["id"]
    data = base64.b64encode(PDF).decode()
    create(client, _media(pid, data=data, size=len(PDF), hash=_sha1_b64(PDF)))
    create(client, _media(pid, data=data))  # nothing to compare with
    create(client, _media(pid, size=12, hash=_sha1_b64(b"x")))  # no inline data: not checkable
    r = client.post("/Media", json=_media(pid, data=data, size=len(PDF) + 1))
    assert_outcome(r, 422, expression="Media.content.size", contains=f"holds {len(PDF)}")
    r = client.post("/Media", json=_media(pid, data=data, hash=_sha1_b64(b"other")))
    assert_outcome(r, 422, expression="Media.content.hash", contains=_sha1_b64(PDF))


def test_attachment_mismatch_in_a_transaction_writes_nothing(client):
    pid = create(client, patient())["id"]
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(PDF).decode(), 64))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _media(pid, data=wrapped, size=len(PDF), hash=_sha1_b64(PDF)),
                "request": {"method": "POST", "url": "Media"},
            },
            {
                "resource": _media(pid, data=wrapped, size=1),
                "request": {"method": "POST", "url": "Media"},
            },
        ],
    }
    assert_outcome(
        client.post("", json=bundle), 422, expression="Bundle.entry[1].resource.content.size"
    )
    assert not client.get("/Media", params={"subject": f"Patient/{pid}"}).json().get("entry")
