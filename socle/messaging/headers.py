"""The MSSanté headers of a message (Référentiel #2, fr-documents §3.5) and the subject convention
of messages carrying documents (§3.3): build them, read them, say what is missing.

| Header          | Rule                                                                     |
| `X-MSS-CODECDA` | the CDA header `code` of each CDA in IHE_XDM.ZIP, comma-separated        |
| `X-MSS-INS`     | `O` when the CDA carries a qualified INS, else `N`; only with a CDA      |
| `X-MSS-NIL`     | every message: the sending software's reference (convergence.esante)     |
| `X-MSS-MES`     | `FIN` on a message to a patient mailbox when the professional closes     |
|                 | replies                                                                  |

Subject of a message carrying documents: `XDM/1.0/DDM+<libellé> <NOM> <prénom> <date de
naissance>`; an integration failure answers `[KO Intégration système !][<code>] <subject>`.
The birth date is written JJ/MM/AAAA (Socle's choice: the sources seen do not fix it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from ..record.cda import CdaError, read_header
from .xds import XdmPackage

CODECDA = "X-MSS-CODECDA"
INS = "X-MSS-INS"
NIL = "X-MSS-NIL"
MES = "X-MSS-MES"
END_OF_REPLIES = "FIN"
PATIENT_DOMAIN_PREFIX = "patient."  # <INS>@patient.<domain>
SUBJECT_PREFIX = "XDM/1.0/DDM+"
CDA_TYPES = frozenset({"text/xml", "application/xml", "application/hl7-v3+xml"})

_SUBJECT = re.compile(
    r"^XDM/1\.0/DDM\+(?P<label>.+) (?P<family>\S+) (?P<given>\S+) "
    r"(?P<birth>\d{2}/\d{2}/\d{4})$"
)


@dataclass(frozen=True)
class MssHeaders:
    cda_codes: tuple[str, ...] = ()
    ins_qualified: bool | None = None  # None: no X-MSS-INS
    nil: str | None = None
    end_of_replies: bool = False

    def apply(self, message: Message) -> None:
        """Set these headers on `message` (replacing any it has)."""
        for name in (CODECDA, INS, NIL, MES):
            del message[name]
        if self.cda_codes:
            message[CODECDA] = ",".join(self.cda_codes)
        if self.ins_qualified is not None:
            message[INS] = "O" if self.ins_qualified else "N"
        if self.nil:
            message[NIL] = self.nil
        if self.end_of_replies:
            message[MES] = END_OF_REPLIES


def read_headers(message: Message) -> MssHeaders:
    codes = str(message.get(CODECDA) or "")
    ins = str(message.get(INS) or "").strip().upper()
    return MssHeaders(
        cda_codes=tuple(c.strip() for c in codes.split(",") if c.strip()),
        ins_qualified=True if ins == "O" else False if ins == "N" else None,
        nil=str(message.get(NIL)).strip() if message.get(NIL) else None,
        end_of_replies=str(message.get(MES) or "").strip().upper() == END_OF_REPLIES,
    )


def is_patient_address(address: str) -> bool:
    return address.rpartition("@")[2].lower().startswith(PATIENT_DOMAIN_PREFIX)


def header_problems(message: Message, packages: Iterable[XdmPackage] = ()) -> list[str]:
    """What the message's MSSanté headers miss or get wrong, given the XDM it carries (empty:
    they are right). English, for the sender's report; no health data."""
    problems = []
    if not message.get(NIL):
        problems.append(f"{NIL} is required on every message")
    carries_cda = any(d.entry.mime_type in CDA_TYPES for pkg in packages for d in pkg.documents)
    ins = str(message.get(INS) or "").strip()
    if carries_cda and not message.get(CODECDA):
        problems.append(f"{CODECDA} is required when IHE_XDM.ZIP carries a CDA document")
    if carries_cda and ins not in ("O", "N"):
        problems.append(f"{INS} is required with a CDA document: O or N")
    if not carries_cda and (message.get(CODECDA) or message.get(INS)):
        problems.append(f"{CODECDA} and {INS} only come with a CDA document in IHE_XDM.ZIP")
    mes = message.get(MES)
    if mes is not None:
        if str(mes).strip().upper() != END_OF_REPLIES:
            problems.append(f"{MES} takes the value {END_OF_REPLIES} only")
        recipients = [a for _, a in _addresses(message, "To", "Cc")]
        if not recipients or not all(is_patient_address(a) for a in recipients):
            problems.append(f"{MES} only goes on messages to patient mailboxes")
    return problems


def _addresses(message: Message, *names: str) -> list[tuple[str, str]]:
    return getaddresses([str(v) for name in names for v in message.get_all(name) or []])


def headers_for(
    packages: Iterable[XdmPackage], nil: str, *, end_of_replies: bool = False
) -> MssHeaders:
    """The headers of a message carrying these XDM subsets: the CDA codes and INS flag read from
    each CDA's header (the record's CDA reader), the sender's NIL reference."""
    codes: list[str] = []
    qualified: list[bool] = []
    for pkg in packages:
        for doc in pkg.documents:
            if doc.entry.mime_type not in CDA_TYPES:
                continue
            try:
                header = read_header(doc.content)
            except CdaError:
                continue
            codes.append(header.type_code[1])
            qualified.append(header.ins is not None and not header.ins_test)
    return MssHeaders(
        cda_codes=tuple(codes),
        ins_qualified=all(qualified) if qualified else None,
        nil=nil,
        end_of_replies=end_of_replies,
    )


# -- subject -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSubject:
    label: str  # the document kind, e.g. "Lettre de liaison"
    family: str  # birth name, upper case
    given: str
    birth_date: dt.date

    def __str__(self) -> str:
        label = " ".join(self.label.split())  # a subject's runs of spaces fold in transit
        return (
            f"{SUBJECT_PREFIX}{label} {self.family.upper()} {self.given} {self.birth_date:%d/%m/%Y}"
        )


def read_subject(subject: str) -> DocumentSubject | None:
    """The parts of a document message's subject; None if it does not follow the convention
    (names with spaces are written with hyphens or joined: the convention has no quoting)."""
    m = _SUBJECT.match(" ".join(subject.split()))
    if m is None:
        return None
    try:
        birth = dt.datetime.strptime(m["birth"], "%d/%m/%Y").date()
    except ValueError:
        return None
    return DocumentSubject(m["label"], m["family"], m["given"], birth)


def ko_subject(code: str, subject: str) -> str:
    """The subject of an integration failure's acknowledgement."""
    return f"[KO Intégration système !][{code}] {subject}"
