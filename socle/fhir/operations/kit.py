"""What an operation declares: its OperationDefinition, and the Parameters it sends back.

Each operation module declares one `Operation` per operation and lists them in `OPERATIONS`; the
application collects those lists (its CapabilityStatement names them, `catalogue.py` serves them
as OperationDefinition resources) and the handlers read their input with `arguments.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import Response

from ... import __version__
from ..rest.http import fhir_response

# Socle's own operations have one canonical base; operations defined by HL7 ($validate,
# $everything, $merge) keep their HL7 canonical URL.
SOCLE_DEFINITIONS = "https://socle.example.org/fhir/OperationDefinition/"
HL7_DEFINITIONS = "http://hl7.org/fhir/OperationDefinition/"


@dataclass(frozen=True)
class Param:
    """One parameter: ``type`` is its FHIR type (a resource type for a resource, None for a
    parameter made of ``parts``); ``also`` lists the other types a client may send it as
    (often ``string``: clients send a date or a code as text)."""

    name: str
    type: str | None
    min: int = 0
    max: Literal["1", "*"] = "1"
    documentation: str = ""
    also: tuple[str, ...] = ()
    parts: tuple[Param, ...] = ()

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type, *self.also) if self.type else ()

    def to_json(self, use: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "use": use, "min": self.min, "max": self.max}
        doc = self.documentation
        if self.also:
            doc = f"{doc} Also accepted as {', '.join(self.also)}.".strip()
        if doc:
            out["documentation"] = doc
        if self.type:
            out["type"] = self.type
        if self.parts:
            out["part"] = [p.to_json(use) for p in self.parts]
        return out


def group(name: str, *parts: Param) -> Param:
    """A repeatable parameter made of parts (an output's record, an attempt…)."""
    return Param(name, None, max="*", parts=parts)


@dataclass(frozen=True)
class Operation:
    """An operation as its OperationDefinition says it: ``resource`` the types it applies to
    (``Resource``: every type), invoked at the system, type and/or instance level."""

    code: str
    title: str
    description: str
    resource: tuple[str, ...] = ("Patient",)
    system: bool = False
    type: bool = False
    instance: bool = False
    affects_state: bool = False
    inputs: tuple[Param, ...] = ()
    outputs: tuple[Param, ...] = ()
    canonical: str | None = None  # an HL7 operation's URL; Socle's own are under one base
    # the input Parameters are checked against R4 first, unless the operation's input is a
    # resource that may be invalid ($validate answers about it)
    checks_input: bool = True
    # the OperationDefinition's id when the definer's is not `<type>-<code>` (Bulk Data's
    # `export`, `patient-export`, `group-export`)
    given_id: str | None = None
    input_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", frozenset(p.name for p in self.inputs))

    @property
    def label(self) -> str:
        return f"${self.code}"

    @property
    def id(self) -> str:
        if self.given_id:
            return self.given_id
        return f"{self.resource[0]}-{self.code}" if self.resource else self.code

    @property
    def url(self) -> str:
        return self.canonical or SOCLE_DEFINITIONS + self.id

    def applies_to(self, rtype: str) -> bool:
        return (self.type or self.instance) and (
            rtype in self.resource or "Resource" in self.resource
        )

    def definition(self) -> dict[str, Any]:
        """The OperationDefinition resource (R4)."""
        parameters = [
            *(p.to_json("in") for p in self.inputs),
            *(p.to_json("out") for p in self.outputs),
        ]
        return {
            "resourceType": "OperationDefinition",
            "id": self.id,
            "url": self.url,
            "version": __version__,
            "name": "".join(w.capitalize() for w in self.id.replace("-", " ").split()),
            "title": self.title,
            "status": "active",
            "kind": "operation",
            "publisher": "Socle",
            "description": self.description,
            "affectsState": self.affects_state,
            "code": self.code,
            # a system-level operation of no type has no resource (R4: no empty arrays)
            **({"resource": list(self.resource)} if self.resource else {}),
            "system": self.system,
            "type": self.type,
            "instance": self.instance,
            **({"parameter": parameters} if parameters else {}),
        }


def output_parameters(*parts: dict[str, Any] | None) -> dict[str, Any]:
    """A Parameters resource of these parts (None parts left out)."""
    return {"resourceType": "Parameters", "parameter": [p for p in parts if p]}


def send_parameters(*parts: dict[str, Any] | None) -> Response:
    return fhir_response(output_parameters(*parts))
