"""CDA R2 header reader for French CI-SIS documents (fr-documents §2), and its comparison with the
DocumentReference that comes with the document (PDSm).

    header = read_header(data)          # raises CdaError (issues with XPath-ish locations)
    issues = compare_with_metadata(header, docref, patient_ins, "Bundle.entry[1].resource")

Parsing is hardened: no DTD, no entities, no network, no file access (a resolver that answers
nothing), libxml2's default size limits (no huge_tree); a document with a DOCTYPE is refused. The
document is parsed incrementally and only up to the start of its body (see `_parse`), so a 20 MB
CDA N1 costs little and its base64 payload never becomes a Python string.

Times: an HL7 TS with hours must carry its UTC offset (it becomes a FHIR dateTime, where a time
needs a zone); a TS to the day gives a FHIR date-only dateTime.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..fhir.outcome import Issue
from . import terminology

V3 = "urn:hl7-org:v3"
NS = {"h": V3}

HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
TYPE_ID_ROOT = "2.16.840.1.113883.1.3"
TYPE_ID_EXTENSION = "POCD_HD000040"
LOINC_OID = "2.16.840.1.113883.6.1"
A05_OID = "1.2.250.1.213.1.1.4.12"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
IDNAT_PS_OID = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
INS_OIDS = {"1.2.250.1.213.1.4.8": False, "1.2.250.1.213.1.4.9": False}  # NIR, NIA
INS_TEST_OIDS = {"1.2.250.1.213.1.4.10": True, "1.2.250.1.213.1.4.11": True}  # test, demo
BIRTH_NAME_QUALIFIER = "BR"  # as the generator writes it (socle/region/data/unverified.json)

# IdNat_PS: fr-documents §2.4, the P4D invariant ^(0|1|3|4|5|6|8)\d*$ (with at least one digit
# after the prefix). IdNat_Struct: prefix 0 ADELI cabinet, 1 FINESS, 2 SIREN, 3 SIRET, 4 RPPS
# rang; letters allowed after it (Corsican FINESS numbers start with 2A / 2B).
IDNAT_PS = re.compile(r"(0|1|3|4|5|6|8)\d+")
IDNAT_STRUCT = re.compile(r"[0-4][0-9A-Z]+")
OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_TS = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)

_FHIR_CONFIDENTIALITY = {
    "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality",
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    "urn:oid:" + CONFIDENTIALITY_OID,
}


@dataclass(frozen=True)
class CdaHeader:
    document_id: tuple[str, str | None]  # id root, extension
    set_id: tuple[str, str | None] | None
    version: int | None
    type_code: tuple[str, str]  # (codeSystem OID, code)
    title: str | None
    effective_time: str | None  # FHIR dateTime
    confidentiality: tuple[str, str] | None  # (codeSystem, code)
    language: str | None
    template_ids: tuple[str, ...]
    model_template: str | None  # the model templateId (not HL7 France / CI-SIS)
    format_code: str | None  # ASS_A11, or ASS_A12 by nonXMLBody mediaType for N1
    patient_ids: tuple[tuple[str, str], ...]  # recordTarget/patientRole/id (root, extension)
    ins: tuple[str, str] | None  # (OID, matricule)
    ins_test: bool  # the INS has a test / demo OID (.10 / .11): refuse it in production
    patient_family: str | None  # birth name
    patient_given: tuple[str, ...]
    patient_gender: str | None  # administrativeGenderCode@code (F, M, UN)
    patient_birth_date: str | None  # ISO date (or YYYY / YYYY-MM)
    author_ids: tuple[str, ...]  # IdNat_PS of the authors
    author_org_ids: tuple[str, ...]  # IdNat_Struct of the authors' organisations
    custodian_id: str | None  # IdNat_Struct
    legal_authenticator_id: str | None  # IdNat_PS
    service_start: str | None
    service_end: str | None
    facility_code: str | None
    replaces: tuple[str, str | None] | None  # relatedDocument[@typeCode=RPLC]/parentDocument/id
    body_media_type: str | None  # nonXMLBody/text@mediaType; None for a structuredBody

    @property
    def unique_id(self) -> str:
        """The document id as a masterIdentifier value (system urn:ietf:rfc:3986):
        `urn:oid:root` or `urn:oid:root^extension` (`urn:uuid:` for a UUID root)."""
        return _unique_id(*self.document_id)


@dataclass
class CdaError(ValueError):
    """The data is not an acceptable French CDA R2 document; `issues` say what and where."""

    issues: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)


def _unique_id(root: str, extension: str | None) -> str:
    base = f"urn:uuid:{root.lower()}" if UUID.fullmatch(root) else f"urn:oid:{root}"
    return f"{base}^{extension}" if extension else base


# -- parsing -------------------------------------------------------------------------------------


class _NoResolver(etree.Resolver):  # type: ignore[misc]
    """Resolves every external DTD or entity to nothing. libxml2 reads a local external subset
    (DOCTYPE ... SYSTEM "file:...") even with load_dtd=False; this stops it touching any file."""

    def resolve(self, system_url: Any, public_id: Any, context: Any) -> Any:
        return self.resolve_string("", context)


def _parser() -> etree.XMLPullParser:
    # A new parser per call: lxml parsers keep state and are not shared across threads.
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        collect_ids=False,
    )
    parser.resolvers.add(_NoResolver())
    return parser


_NO_DOCTYPE = "a DOCTYPE (DTD, entities) is not allowed in a CDA document"
_PROLOGUE = 64 * 1024  # where a DOCTYPE would be; one further on is refused after parsing
_DOCTYPE_MARKS = tuple(
    m.encode(enc) for m in ("<!DOCTYPE", "<!ENTITY") for enc in ("ascii", "utf-16-le", "utf-16-be")
)
_CHUNK = 64 * 1024
_ROOT = f"{{{V3}}}ClinicalDocument"
_COMPONENT = f"{{{V3}}}component"
_NON_XML = f"{{{V3}}}nonXMLBody"


def _body_reached(event: str, el: Any) -> bool:
    """True once the header is complete and the body's kind (and mediaType) is known."""
    parent = el.getparent()
    parent_tag = parent.tag if parent is not None else None
    if event == "start":
        if el.tag == f"{{{V3}}}structuredBody":
            return True
        return bool(el.tag == f"{{{V3}}}text" and parent_tag == _NON_XML)
    return bool(el.tag == _NON_XML or (el.tag == _COMPONENT and parent_tag == _ROOT))


def _parse(data: bytes) -> Any:
    """The ClinicalDocument element, parsed up to the start of its body.

    The body (the last child of ClinicalDocument) is not parsed beyond its first start tags: a
    CDA N1 embeds its payload as one base64 text node, and libxml2 without huge_tree refuses text
    nodes over 10 MB (XML_MAX_TEXT_LENGTH), so a 20 MB document could not be parsed whole. The
    body's well-formedness is therefore not checked here.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise CdaError([_issue(f"expected bytes, not {type(data).__name__}", "/")])
    if not data.strip():
        raise CdaError([_issue("the document is empty", "/")])
    head = data[:_PROLOGUE]
    if any(mark in head for mark in _DOCTYPE_MARKS):
        raise CdaError([_issue(_NO_DOCTYPE, "/")])
    parser = _parser()
    root = None
    done = False
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset : offset + _CHUNK])
            for event, el in parser.read_events():
                if root is None:
                    root = el
                    if root.tag != _ROOT:
                        done = True
                if _body_reached(event, el):
                    done = True
                if done:
                    break
            if done:
                break
        else:
            closed = parser.close()
            root = closed if root is None else root
    except (etree.LxmlError, ValueError) as exc:
        raise CdaError([_issue(f"not well-formed XML: {_short(str(exc))}", "/")]) from None
    if root is None:
        raise CdaError([_issue("not well-formed XML: no root element", "/")])
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise CdaError([_issue(_NO_DOCTYPE, "/")])
    return root


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _issue(diagnostics: str, where: str, code: str = "invalid") -> Issue:
    # The XPath-ish location is repeated in the text: it survives Issue.at(), which rebases the
    # expression onto a FHIRPath (e.g. the Binary or DocumentReference the CDA came in).
    text = f"CDA: {diagnostics}" if where == "/" else f"CDA {where}: {diagnostics}"
    return Issue("error", code, text, (where,))


class _Reader:
    """Reads the header of one ClinicalDocument, collecting every problem."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.issues: list[Issue] = []

    def error(self, diagnostics: str, where: str, code: str = "invalid") -> None:
        self.issues.append(_issue(diagnostics, where, code))

    def find(self, path: str, base: Any = None) -> Any:
        return (self.root if base is None else base).find(path, NS)

    def findall(self, path: str, base: Any = None) -> list[Any]:
        return list((self.root if base is None else base).findall(path, NS))

    @staticmethod
    def attr(el: Any, name: str) -> str | None:
        if el is None:
            return None
        value = el.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    @staticmethod
    def text(el: Any) -> str | None:
        if el is None:
            return None
        value = " ".join("".join(el.itertext()).split())
        return value or None

    def ts(self, el: Any, where: str, *, date_only: bool = False) -> str | None:
        value = self.attr(el, "value")
        if value is None:
            return None
        out = hl7_ts_to_fhir(value, date_only=date_only)
        if isinstance(out, Exception):
            self.error(f"malformed HL7 time {_short(value, 40)!r}: {out}", f"{where}/@value")
            return None
        return out

    def ii(self, el: Any, where: str) -> tuple[str, str | None] | None:
        """An II (root, extension) whose root must be an OID or UUID."""
        root = self.attr(el, "root")
        if root is None:
            self.error("the identifier has no root", where, "required")
            return None
        if not (OID.fullmatch(root) or UUID.fullmatch(root)):
            self.error(f"the identifier root {_short(root, 60)!r} is not an OID or a UUID", where)
            return None
        return root, self.attr(el, "extension")

    def idnat(self, el: Any, where: str, kind: str, pattern: re.Pattern[str]) -> str | None:
        ext = self.attr(el, "extension")
        if ext is None:
            self.error(f"the {kind} identifier has no extension", where, "required")
            return None
        if not pattern.fullmatch(ext):
            self.error(
                f"malformed {kind} {_short(ext, 40)!r}: expected the pattern {pattern.pattern}"
                " (type prefix, then the number)",
                where,
            )
            return None
        return ext

    def ids_with_root(
        self, parents: list[tuple[Any, str]], oid: str, kind: str, pattern: re.Pattern[str]
    ) -> list[str]:
        out: list[str] = []
        for parent, where in parents:
            for el in self.findall("h:id", parent):
                if self.attr(el, "root") == oid:
                    value = self.idnat(el, f"{where}/id", kind, pattern)
                    if value is not None:
                        out.append(value)
        return out


def read_header(data: bytes) -> CdaHeader:
    """The header of a French CDA R2 document; raises CdaError listing every problem found."""
    root = _parse(data)
    if not isinstance(root.tag, str) or root.tag != f"{{{V3}}}ClinicalDocument":
        tag = root.tag if isinstance(root.tag, str) else "?"
        raise CdaError(
            [
                _issue(
                    f"the root element is {_short(tag, 80)!r}, not ClinicalDocument in the "
                    f"namespace {V3}",
                    "ClinicalDocument",
                    "structure",
                )
            ]
        )
    r = _Reader(root)
    cd = "ClinicalDocument"

    realms = [r.attr(el, "code") for el in r.findall("h:realmCode")]
    if "FR" not in realms:
        found = ", ".join(repr(x) for x in realms) if realms else "none"
        r.error(f'realmCode must be "FR" (found {found})', f"{cd}/realmCode", "value")

    type_id = r.find("h:typeId")
    if (r.attr(type_id, "root"), r.attr(type_id, "extension")) != (
        TYPE_ID_ROOT,
        TYPE_ID_EXTENSION,
    ):
        r.error(
            f"typeId must have root {TYPE_ID_ROOT} and extension {TYPE_ID_EXTENSION}",
            f"{cd}/typeId",
            "value",
        )

    templates = tuple(
        t for t in (r.attr(el, "root") for el in r.findall("h:templateId")) if t is not None
    )
    for required, what in ((HL7_FRANCE_TEMPLATE, "HL7 France"), (CISIS_TEMPLATE, "CI-SIS")):
        if required not in templates:
            r.error(f"missing the {what} templateId {required}", f"{cd}/templateId", "required")
    others = [t for t in templates if t not in (HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE)]
    model = next((t for t in others if terminology.is_model_template(t)), None)
    if model is None and others:
        model = others[0]
    if model is None:
        r.error(
            "no model templateId (e.g. 1.2.250.1.213.1.1.1.29 for LDL-SES, "
            f"{terminology.N1_TEMPLATE} for N1) besides HL7 France and CI-SIS",
            f"{cd}/templateId",
            "required",
        )

    id_el = r.find("h:id")
    document_id = None
    if id_el is None:
        r.error("the document has no id", f"{cd}/id", "required")
    else:
        document_id = r.ii(id_el, f"{cd}/id")

    set_el = r.find("h:setId")
    set_id = r.ii(set_el, f"{cd}/setId") if set_el is not None else None
    version = None
    version_value = r.attr(r.find("h:versionNumber"), "value")
    if version_value is not None:
        if re.fullmatch(r"[0-9]{1,9}", version_value):
            version = int(version_value)
        else:
            r.error(
                f"versionNumber {_short(version_value, 20)!r} is not an integer",
                f"{cd}/versionNumber/@value",
            )

    code_el = r.find("h:code")
    code, code_system = r.attr(code_el, "code"), r.attr(code_el, "codeSystem")
    if code is None or code_system is None:
        r.error("the document has no code (code and codeSystem)", f"{cd}/code", "required")

    title = r.text(r.find("h:title"))
    effective = r.ts(r.find("h:effectiveTime"), f"{cd}/effectiveTime")
    conf_el = r.find("h:confidentialityCode")
    conf: tuple[str, str] | None = None
    conf_code = r.attr(conf_el, "code")
    if conf_code is not None:
        conf = (r.attr(conf_el, "codeSystem") or CONFIDENTIALITY_OID, conf_code)
    language = r.attr(r.find("h:languageCode"), "code")

    # recordTarget
    rt = f"{cd}/recordTarget/patientRole"
    role = r.find("h:recordTarget/h:patientRole")
    patient_ids: list[tuple[str, str]] = []
    ins: tuple[str, str] | None = None
    ins_test = False
    if role is not None:
        for i, el in enumerate(r.findall("h:id", role), 1):
            root_, ext = r.attr(el, "root"), r.attr(el, "extension")
            if root_ is None or ext is None:
                continue
            patient_ids.append((root_, ext))
            test = INS_OIDS.get(root_, INS_TEST_OIDS.get(root_))
            if test is not None and ins is None:
                if re.fullmatch(r"[0-9]{6}[0-9AB][0-9]{8}", ext):
                    ins, ins_test = (root_, ext), test
                else:
                    r.error(
                        f"malformed matricule INS {_short(ext, 30)!r} (15 characters expected)",
                        f"{rt}/id[{i}]",
                    )
    if not patient_ids:
        r.error(
            "recordTarget/patientRole has no id with root and extension", f"{rt}/id", "required"
        )
    patient = r.find("h:patient", role) if role is not None else None
    family: str | None = None
    given: tuple[str, ...] = ()
    if patient is not None:
        name = r.find("h:name", patient)
        if name is not None:
            families = r.findall("h:family", name)
            birth = [
                f for f in families if BIRTH_NAME_QUALIFIER in (f.get("qualifier") or "").split()
            ]
            plain = [f for f in families if not f.get("qualifier")]
            chosen = birth[0] if birth else (plain[0] if plain else None)
            family = r.text(chosen)
            given = tuple(g for g in (r.text(el) for el in r.findall("h:given", name)) if g)
    gender = (
        r.attr(r.find("h:administrativeGenderCode", patient), "code")
        if patient is not None
        else None
    )
    birth_date = (
        r.ts(r.find("h:birthTime", patient), f"{rt}/patient/birthTime", date_only=True)
        if patient is not None
        else None
    )

    # author, custodian, legal authenticator
    authors = r.findall("h:author")
    assigned = [
        (a, f"{cd}/author[{i}]/assignedAuthor")
        for i, el in enumerate(authors, 1)
        if (a := r.find("h:assignedAuthor", el)) is not None
    ]
    author_ids = r.ids_with_root(assigned, IDNAT_PS_OID, "IdNat_PS", IDNAT_PS)
    orgs = [
        (o, f"{where}/representedOrganization")
        for a, where in assigned
        if (o := r.find("h:representedOrganization", a)) is not None
    ]
    author_org_ids = r.ids_with_root(orgs, IDNAT_STRUCT_OID, "IdNat_Struct", IDNAT_STRUCT)
    cust_path = "h:custodian/h:assignedCustodian/h:representedCustodianOrganization"
    cust = r.find(cust_path)
    custodian = r.ids_with_root(
        [(cust, f"{cd}/custodian/assignedCustodian/representedCustodianOrganization")]
        if cust is not None
        else [],
        IDNAT_STRUCT_OID,
        "IdNat_Struct",
        IDNAT_STRUCT,
    )
    legal = r.find("h:legalAuthenticator/h:assignedEntity")
    legal_ids = r.ids_with_root(
        [(legal, f"{cd}/legalAuthenticator/assignedEntity")] if legal is not None else [],
        IDNAT_PS_OID,
        "IdNat_PS",
        IDNAT_PS,
    )

    # service event, encounter, replacement, body
    start = end = None
    for i, doc_of in enumerate(r.findall("h:documentationOf"), 1):
        period = r.find("h:serviceEvent/h:effectiveTime", doc_of)
        if period is None:
            continue
        where = f"{cd}/documentationOf[{i}]/serviceEvent/effectiveTime"
        start = r.ts(r.find("h:low", period), f"{where}/low")
        end = r.ts(r.find("h:high", period), f"{where}/high")
        break
    facility = r.attr(
        r.find("h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"),
        "code",
    )
    replaces = None
    for i, rel in enumerate(r.findall("h:relatedDocument"), 1):
        if rel.get("typeCode") == "RPLC":
            parent_id = r.find("h:parentDocument/h:id", rel)
            where = f"{cd}/relatedDocument[{i}]/parentDocument/id"
            if parent_id is None:
                r.error("a replacement (RPLC) without parentDocument/id", where, "required")
            else:
                replaces = r.ii(parent_id, where)
            break
    media_type = None
    non_xml = r.find("h:component/h:nonXMLBody")
    if non_xml is not None:
        text_el = r.find("h:text", non_xml)
        # HL7 ED: mediaType defaults to text/plain
        media_type = (r.attr(text_el, "mediaType") or "text/plain") if text_el is not None else None

    if model == terminology.N1_TEMPLATE:
        format_code = terminology.format_of_media_type(media_type) if media_type else None
    else:
        format_code = terminology.format_of_template(model) if model else None

    if r.issues:
        raise CdaError(r.issues)
    assert document_id is not None and code is not None and code_system is not None
    return CdaHeader(
        document_id=document_id,
        set_id=set_id,
        version=version,
        type_code=(code_system, code),
        title=title,
        effective_time=effective,
        confidentiality=conf,
        language=language,
        template_ids=templates,
        model_template=model,
        format_code=format_code,
        patient_ids=tuple(patient_ids),
        ins=ins,
        ins_test=ins_test,
        patient_family=family,
        patient_given=given,
        patient_gender=gender,
        patient_birth_date=birth_date,
        author_ids=tuple(author_ids),
        author_org_ids=tuple(author_org_ids),
        custodian_id=custodian[0] if custodian else None,
        legal_authenticator_id=legal_ids[0] if legal_ids else None,
        service_start=start,
        service_end=end,
        facility_code=facility,
        replaces=replaces,
        body_media_type=media_type,
    )


def hl7_ts_to_fhir(value: str, *, date_only: bool = False) -> str | ValueError:
    """An HL7 v3 TS as a FHIR dateTime (or date with `date_only`); a ValueError says why not.

    YYYY[MM[DD[HH[MM[SS[.ffff]]]]]][+/-ZZZZ]: with hours the offset is required; without, the
    offset (if any) is dropped, as FHIR dates have no zone.
    """
    m = _TS.fullmatch(value)
    if m is None:
        return ValueError("expected YYYYMMDDHHMMSS[.ffff]+ZZZZ")
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    try:
        dt.date(int(year), int(month or 1), int(day or 1))
        if hour is not None:
            dt.time(int(hour), int(minute or 0), int(second or 0))
    except ValueError as exc:
        return ValueError(str(exc))
    if sign is not None and (int(oh) > 14 or int(om) > 59):
        return ValueError("the UTC offset is out of range")
    if int(year) == 0:
        return ValueError("year 0000")
    out = year
    if month:
        out += f"-{month}"
    if day:
        out += f"-{day}"
    if hour is None or date_only:
        return out
    if sign is None:
        return ValueError("a time needs its UTC offset (e.g. +0200)")
    out += f"T{hour}:{minute or '00'}:{second or '00'}"
    if frac:
        out += f".{frac}"
    return out + f"{sign}{oh}:{om}"


# -- header vs DocumentReference -----------------------------------------------------------------


def _codings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        codings = value.get("coding")
        if isinstance(codings, list):
            return [c for c in codings if isinstance(c, dict)]
    return []


def _fmt_codings(codings: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "no coding"


def compare_with_metadata(
    header: CdaHeader,
    docref: dict[str, Any],
    patient_ins: tuple[str, str] | None,
    where: str,
) -> list[Issue]:
    """Where the CDA header contradicts the DocumentReference it comes with (errors, code
    business-rule, located under `where`, e.g. "Bundle.entry[1].resource").

    `patient_ins` is the subject Patient's qualified INS (system OID, bare or `urn:oid:`, and
    matricule), or None if it has none. Checked: patient INS, type, format, confidentiality and
    masterIdentifier; a DocumentReference element that is absent is not a contradiction (except
    the patient: a header without INS, or a subject without qualified INS, is an error).
    """
    issues: list[Issue] = []

    def err(diagnostics: str, path: str) -> None:
        issues.append(Issue("error", "business-rule", diagnostics, (f"{where}.{path}",)))

    # patient
    if header.ins is None:
        err(
            "the CDA header has no INS: recordTarget/patientRole/id needs a matricule INS with "
            "root 1.2.250.1.213.1.4.8 (NIR) or 1.2.250.1.213.1.4.9 (NIA)",
            "subject",
        )
    elif patient_ins is None:
        err(
            f"the CDA header INS {header.ins[1]} ({header.ins[0]}) cannot be matched: the "
            "subject Patient has no qualified INS",
            "subject",
        )
    else:
        oid, value = patient_ins[0].removeprefix("urn:oid:"), patient_ins[1]
        if (oid, value) != header.ins:
            err(
                f"the CDA header INS {header.ins[1]} ({header.ins[0]}) is not the subject "
                f"Patient's INS {value} ({oid})",
                "subject",
            )

    # type
    type_codings = _codings(docref.get("type"))
    if type_codings:
        oid, code = header.type_code
        systems = {f"urn:oid:{oid}"}
        url = terminology.system_url(oid)
        if url:
            systems.add(url)
        if not any(c.get("system") in systems and c.get("code") == code for c in type_codings):
            err(
                f"DocumentReference.type ({_fmt_codings(type_codings)}) does not match the CDA "
                f"header code {code} (codeSystem {oid}"
                + (f", i.e. {url}" if url else ", a code system unknown to JDV_J07")
                + ")",
                "type",
            )

    # format
    content = docref.get("content")
    first = content[0] if isinstance(content, list) and content else None
    fmt = first.get("format") if isinstance(first, dict) else None
    if isinstance(fmt, dict) and fmt.get("code") is not None and header.format_code is not None:
        if fmt.get("code") != header.format_code:
            why = (
                f"mediaType {header.body_media_type}"
                if header.model_template == terminology.N1_TEMPLATE
                else "ASS_A11"
            )
            err(
                f"DocumentReference.content[0].format {fmt.get('code')} does not match the CDA "
                f"formatCode {header.format_code} (model templateId {header.model_template}, "
                f"by {why})",
                "content[0].format",
            )
        else:
            expected = terminology.format_system(header.format_code)
            system = fmt.get("system")
            if system is not None and expected is not None and system != expected:
                err(
                    f"DocumentReference.content[0].format {fmt.get('code')} has system {system}, "
                    f"not {expected}",
                    "content[0].format.system",
                )

    # confidentiality
    if header.confidentiality is not None and header.confidentiality[0] == CONFIDENTIALITY_OID:
        labels = docref.get("securityLabel")
        conf = [
            c
            for label in (labels if isinstance(labels, list) else [])
            for c in _codings(label)
            if c.get("system") in _FHIR_CONFIDENTIALITY
        ]
        if conf and not any(c.get("code") == header.confidentiality[1] for c in conf):
            err(
                f"DocumentReference.securityLabel confidentiality ({_fmt_codings(conf)}) does not "
                f"match the CDA confidentialityCode {header.confidentiality[1]}",
                "securityLabel",
            )

    # masterIdentifier
    master = docref.get("masterIdentifier")
    master_value = master.get("value") if isinstance(master, dict) else None
    if isinstance(master_value, str):
        root, ext = header.document_id
        expected_id = header.unique_id
        accepted = {expected_id, f"{root}^{ext}" if ext else root}
        if master_value not in accepted:
            err(
                f"DocumentReference.masterIdentifier {master_value} is not the CDA document id "
                f"{expected_id} (root {root}" + (f", extension {ext})" if ext else ")"),
                "masterIdentifier.value",
            )
    return issues
