"""Parts of the pages, in process: the CDA stylesheet (a document becomes readable HTML and
nothing of it but its text reaches the page: no script, no link, no attribute, whatever the
text is), Paris times, the documents' date filters."""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.portal.cda_view import CdaUnreadable, render_cda
from socle.portal.documents import read_filters
from socle.web.times import paris

CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <title>Compte rendu</title>
  <recordTarget><patientRole><patient><name><given>Jeanne</given><family>Dupont</family></name></patient></patientRole></recordTarget>
  <author><assignedAuthor><assignedPerson><name><prefix>Dr</prefix><given>Paul</given><family>Roux</family></name></assignedPerson></assignedAuthor></author>
  <component><structuredBody><component><section>
    <title>Conclusion</title>
    <text>%s</text>
  </section></component></structuredBody></component>
</ClinicalDocument>"""


def test_a_cda_reads_as_its_header_and_sections() -> None:
    html = render_cda(
        (
            CDA % "<paragraph>Tout va bien.</paragraph><list><item>Repos</item></list>"
            "<table><thead><tr><th>Mesure</th></tr></thead><tbody><tr><td>12</td></tr></tbody></table>"
        ).encode()
    )
    tree = lxml.html.fragment_fromstring(str(html))
    assert tree.xpath("string(.//h2)") == "Conclusion"
    assert "Jeanne Dupont" in tree.text_content() and "Dr Paul Roux" in tree.text_content()
    assert tree.xpath("string(.//p)") == "Tout va bien."
    assert tree.xpath("string(.//li)") == "Repos" and tree.xpath("string(.//td)") == "12"


def test_nothing_but_text_comes_from_the_document() -> None:
    hostile = (
        '<paragraph ID="x" styleCode="Bold" onclick="alert(1)">Texte</paragraph>'
        '<linkHtml href="javascript:alert(1)">lien</linkHtml>'
        '<renderMultiMedia referencedObject="img"/>'
        "<script xmlns='http://www.w3.org/1999/xhtml'>alert(1)</script>"
        "<content>&lt;script&gt;alert(2)&lt;/script&gt;</content>"
    )
    html = str(render_cda((CDA % hostile).encode()))
    tree = lxml.html.fragment_fromstring(html)
    assert not tree.xpath("//script | //a | //img | //iframe | //style")
    attributes = {a for el in tree.iter() for a in el.attrib}
    assert attributes <= {"class", "scope"}
    assert "<script>" not in html and "&lt;script&gt;" in html


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=200))
def test_any_text_is_shown_as_text(text: str) -> None:
    html = str(render_cda((CDA % f"<paragraph>{escape(text)}</paragraph>").encode("utf-8")))
    tree = lxml.html.fragment_fromstring(html)
    assert tree.xpath("string(.//div/p)") == text
    assert not tree.xpath("//script")


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b"<html/>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&e;</title></ClinicalDocument>',
    ],
)
def test_what_is_no_safe_cda_is_refused_or_inert(data: bytes) -> None:
    try:
        html = str(render_cda(data))
    except CdaUnreadable:
        return
    assert "root:" not in html  # an external entity is never read


def test_times_are_shown_in_paris_time_in_french() -> None:
    assert paris("2026-01-15T12:30:00Z") == "15 janvier 2026 à 13 h 30"
    assert paris("2026-07-15T12:30:00+00:00") == "15 juillet 2026 à 14 h 30"
    assert paris(dt.date(2026, 12, 3)) == "3 décembre 2026"
    assert paris("2026-03-29") == "29 mars 2026" and paris(None) == "" and paris("nope") == ""


@pytest.mark.parametrize(
    ("sent", "read"),
    [("2025-12-31", "2025-12-31"), ("31/12/2025", "2025-12-31"), (" 01/02/2024 ", "2024-02-01")],
)
def test_document_dates_are_read_as_a_picker_or_a_person_sends_them(sent: str, read: str) -> None:
    filters = read_filters({"du": sent})
    assert not filters.errors and filters.start == read


@pytest.mark.parametrize("sent", ["32/12/2025", "2025-13-01", "demain", "12/2025"])
def test_a_wrong_date_is_explained_on_its_field(sent: str) -> None:
    assert "jj/mm/aaaa" in (read_filters({"du": sent}).errors or {})["du"]
