"""OperationOutcome issues and the exception that carries them to the HTTP layer.

Every client mistake becomes a `FhirError` with one or more issues; the REST layer turns it into a
4xx response whose body is an OperationOutcome (diagnostics say what, expression says where).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: invalid, structure, required, value, not-found, conflict...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out

    def at(self, prefix: str) -> Issue:
        """The same issue located under `prefix` (e.g. `Bundle.entry[3].resource`)."""
        exprs = tuple(_rebase(e, prefix) for e in self.expression) or (prefix,)
        return Issue(self.severity, self.code, self.diagnostics, exprs)


def _rebase(expression: str, prefix: str) -> str:
    # "Patient.name[0]" under "Bundle.entry[2].resource" -> "Bundle.entry[2].resource.name[0]"
    head, _, rest = expression.partition(".")
    if head and head[0].isupper():
        return f"{prefix}.{rest}" if rest else prefix
    return f"{prefix}.{expression}"


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("information", "informational", message)])


@dataclass
class FhirError(Exception):
    """A request that cannot be honoured; `status` is the HTTP status to answer with."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    denied: bool = False  # refused by the access policy (audited as a failed attempt)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    @classmethod
    def of(
        cls, status: int, code: str, diagnostics: str, expression: str | None = None
    ) -> FhirError:
        expr = (expression,) if expression else ()
        return cls(status, [Issue("error", code, diagnostics, expr)])

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(
    diagnostics: str, expression: str | None = None, code: str = "invalid"
) -> FhirError:
    return FhirError.of(400, code, diagnostics, expression)


def forbidden(diagnostics: str, expression: str | None = None, status: int = 403) -> FhirError:
    """An access the policy refuses: 403, or 404 where even existence must not be revealed."""
    code = "forbidden" if status == 403 else "not-found"
    err = FhirError.of(status, code, diagnostics, expression)
    err.denied = True
    return err


def not_found(diagnostics: str) -> FhirError:
    return FhirError.of(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FhirError:
    return FhirError.of(410, "deleted", diagnostics)


def conflict(diagnostics: str, status: int = 409) -> FhirError:
    return FhirError.of(status, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError.of(412, "conflict", diagnostics)


def unprocessable(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues)
