"""Why a received document is not integrated, as one typed error carrying the MSSanté
application error code its MDN reports (fr-documents §3.4, ERR-5 of the CI-SIS HL7v2/MSS
volet): the safety checks, the XDM reader and the filing to the record all raise `Refusal`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorCode(Enum):
    """The integration error codes 900–906 and their French labels (as MDNs carry them)."""

    WRONG_VERSION = ("900", "Version incorrecte pour remplacement ou suppression")
    AUTHOR_NOT_ALLOWED = ("901", "Auteur non autorisé")
    PATIENT_UNKNOWN = ("902", "Patient inconnu")
    INS_ABSENT = ("903", "INS absent du CDA")
    INS_TRAITS_MISMATCH = ("904", "Traits INS incohérents")
    INS_INCOMPLETE = ("905", "INS incomplet")
    OTHER = ("906", "Autre")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]

    @classmethod
    def of(cls, code: str) -> ErrorCode:
        for member in cls:
            if member.code == code:
                return member
        raise ValueError(f"unknown integration error code {code!r}")


class Reason(Enum):
    """What was wrong, for logs and tests; each maps to the MDN code the sender sees."""

    NOT_A_ZIP = "not-a-zip"
    ZIP_BOMB = "zip-bomb"
    TOO_MANY_ENTRIES = "too-many-entries"
    NESTED_ARCHIVE = "nested-archive"
    UNSAFE_PATH = "unsafe-path"
    ENCRYPTED = "encrypted"
    XML_TOO_LARGE = "xml-too-large"
    XML_DTD = "xml-dtd"
    XML_INVALID = "xml-invalid"
    NOT_XDM = "not-xdm"
    METADATA_INVALID = "metadata-invalid"
    CONTENT_MISMATCH = "content-mismatch"
    INS_ABSENT = "ins-absent"
    INS_MISMATCH = "ins-mismatch"
    INS_NOT_QUALIFIED = "ins-not-qualified"
    PATIENT_UNKNOWN = "patient-unknown"
    AUTHOR_NOT_ALLOWED = "author-not-allowed"
    WRONG_VERSION = "wrong-version"
    RECORD_RULE = "record-rule"


_CODES = {
    Reason.INS_ABSENT: ErrorCode.INS_ABSENT,
    Reason.INS_MISMATCH: ErrorCode.INS_TRAITS_MISMATCH,
    Reason.INS_NOT_QUALIFIED: ErrorCode.INS_INCOMPLETE,
    Reason.PATIENT_UNKNOWN: ErrorCode.PATIENT_UNKNOWN,
    Reason.AUTHOR_NOT_ALLOWED: ErrorCode.AUTHOR_NOT_ALLOWED,
    Reason.WRONG_VERSION: ErrorCode.WRONG_VERSION,
}


@dataclass
class Refusal(ValueError):
    """A received attachment or document refused: `reason`, a short English `detail` (never
    health data: it goes to logs), and `where` (the ZIP entry or metadata element)."""

    reason: Reason
    detail: str
    where: str = ""

    @property
    def error(self) -> ErrorCode:
        """The MDN error code: the INS and authorship ones, else 906 (other)."""
        return _CODES.get(self.reason, ErrorCode.OTHER)

    def __str__(self) -> str:
        at = f" ({self.where})" if self.where else ""
        return f"{self.error.code} {self.reason.value}: {self.detail}{at}"
