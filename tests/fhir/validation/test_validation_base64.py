"""base64Binary per the R4 regex: whitespace between quads is valid, anything else is not."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from socle.fhir.attachments import decode_base64

WHITESPACE = st.text(alphabet=" \t\r\n", max_size=3)


def _binary(data: str) -> dict:
    return {"resourceType": "Binary", "contentType": "application/pdf", "data": data}


@st.composite
def spaced_base64(draw) -> tuple[bytes, str]:
    """Random bytes, base64-encoded, with random whitespace between (and around) the quads."""
    raw = draw(st.binary(min_size=1, max_size=200))
    text = base64.b64encode(raw).decode()
    quads = [text[i : i + 4] for i in range(0, len(text), 4)]
    parts = [draw(WHITESPACE) + q for q in quads]
    return raw, "".join(parts) + draw(WHITESPACE)


@given(spaced_base64())
def test_whitespace_between_quads_is_accepted_and_decodes(validator, case):
    raw, text = case
    assert validator.validate(_binary(text)) == []
    assert decode_base64(text) == raw


@given(spaced_base64(), st.data())
def test_corrupted_base64_is_refused_at_its_location(validator, case, data):
    _, text = case
    compact = [i for i, ch in enumerate(text) if not ch.isspace()]
    at = data.draw(st.sampled_from(compact))
    how = data.draw(st.sampled_from(["bad character", "space inside a quad", "missing character"]))
    if how == "bad character":
        broken = text[:at] + data.draw(st.sampled_from("!-_.%é\u00a0")) + text[at + 1 :]
    elif how == "space inside a quad":
        run_start = at
        while run_start > 0 and not text[run_start - 1].isspace():
            run_start -= 1
        at = at if (at - run_start) % 4 else at + 1  # never on a quad boundary
        broken = text[:at] + " " + text[at:]
    else:
        broken = text[:at] + text[at + 1 :]
    issues = [i for i in validator.validate(_binary(broken)) if i.severity == "error"]
    assert [i.expression for i in issues] == [("Binary.data",)], (broken, issues)
    assert "base64Binary" in issues[0].diagnostics


def test_padding_only_at_the_end(validator):
    for text in ("====", "aGVs=G8=", "aGVsbG8=aGVs"):
        issues = validator.validate(_binary(text))
        assert [i.expression for i in issues] == [("Binary.data",)], text
