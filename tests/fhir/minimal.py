"""A minimal valid instance of any R4 resource type, built from its StructureDefinition.

Every element with min >= 1 gets a value of its type; codes of required bindings come from the
bound value set. Used to exercise every type the CapabilityStatement lists.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from socle.fhir.definitions import load_bundle
from socle.fhir.validation.valuesets import ValueSets

PRIMITIVES: dict[str, Any] = {
    "string": "x",
    "markdown": "x",
    "code": "x",
    "id": "x1",
    "uri": "http://example.org/x",
    "url": "http://example.org/x",
    "canonical": "http://example.org/x",
    "oid": "urn:oid:1.2.3",
    "uuid": "urn:uuid:7f3c7b5e-0a3e-4f3c-9a3e-2b1c3d4e5f60",
    "boolean": True,
    "integer": 1,
    "positiveInt": 1,
    "unsignedInt": 1,
    "decimal": 1,
    "date": "2020-01-01",
    "dateTime": "2020-01-01T10:00:00+01:00",
    "instant": "2020-01-01T10:00:00+01:00",
    "time": "10:00:00",
    "base64Binary": "eA==",
    "xhtml": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
}
COMPLEX: dict[str, Any] = {
    "Reference": {"display": "x"},
    "Identifier": {"value": "x"},
    "Period": {"start": "2020-01-01"},
    "Quantity": {"value": 1},
    "SimpleQuantity": {"value": 1},
    "Duration": {"value": 1},
    "Age": {"value": 1},
    "Money": {"value": 1, "currency": "EUR"},
    "HumanName": {"family": "x"},
    "Attachment": {"contentType": "text/plain"},
    "Timing": {"event": ["2020-01-01"]},
    "Expression": {"language": "text/fhirpath", "expression": "true"},
    "Range": {"low": {"value": 1}},
    "Ratio": {"numerator": {"value": 1}},
    "Annotation": {"text": "x"},
    "ContactPoint": {"value": "x"},
    "Address": {"city": "x"},
    "Narrative": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
    },
    "TriggerDefinition": {"type": "named-event", "name": "x"},
    "Signature": {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
        "when": "2020-01-01T10:00:00Z",
        "who": {"display": "x"},
    },
}


@cache
def _snapshots() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for sd in load_bundle("profiles-resources.json"):
        if sd.get("resourceType") == "StructureDefinition" and sd.get("kind") == "resource":
            out[sd["id"]] = sd["snapshot"]["element"]
    return out


@cache
def _valuesets() -> ValueSets:
    return ValueSets()


def _code(el: dict[str, Any]) -> tuple[str | None, str] | None:
    binding = el.get("binding") or {}
    if binding.get("strength") != "required" or not binding.get("valueSet"):
        return None
    codes = _valuesets().expand(binding["valueSet"].split("|")[0])
    if not codes:
        return None
    pairs = sorted(codes.pairs) if hasattr(codes, "pairs") else sorted(codes)  # type: ignore[attr-defined]
    system, code = pairs[0]
    return system, code


def minimal(rtype: str) -> dict[str, Any]:
    elements = _snapshots()[rtype]

    def build(prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        depth = prefix.count(".") + 1
        for el in elements:
            path = el["path"]
            if not path.startswith(prefix + ".") or path.count(".") != depth:
                continue
            if el.get("min", 0) < 1 or "contentReference" in el:
                continue
            name = path.rsplit(".", 1)[1]
            types = [t["code"] for t in el.get("type", [])]
            if name.endswith("[x]"):
                t = types[0]
                key = name[:-3] + t[0].upper() + t[1:]
            else:
                key, t = name, types[0] if types else "BackboneElement"
            value = _value(el, t, path, build)
            out[key] = [value] if el.get("max") != "1" else value
        return out

    resource = {"resourceType": rtype, **build(rtype)}
    resource.update(INVARIANT_NEEDS.get(rtype, {}))
    return resource


# What invariants ask beyond cardinality (e.g. org-1: a name or an identifier).
# (An active SearchParameter must be one Socle can run: a minimal one is a draft.)
INVARIANT_NEEDS: dict[str, dict[str, Any]] = {
    "Organization": {"name": "x"},
    "SearchParameter": {"status": "draft"},
    "AllergyIntolerance": {  # ait-1
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        }
    },
    "Appointment": {  # app-1, app-3
        "start": "2024-01-01T10:00:00Z",
        "end": "2024-01-01T10:30:00Z",
        "participant": [{"actor": {"display": "x"}, "status": "accepted"}],
    },
    "AppointmentResponse": {"actor": {"display": "x"}},  # apr-1
    "CapabilityStatement": {"software": {"name": "x"}, "rest": [{"mode": "server"}]},  # cpb-*
    "Consent": {"policyRule": {"text": "x"}},  # ppc-1
    "ImmunizationRecommendation": {  # imr-1
        "recommendation": [{"forecastStatus": {"text": "x"}, "targetDisease": {"text": "x"}}]
    },
    "InsurancePlan": {"name": "x"},  # ipn-1
    "Linkage": {  # lnk-1
        "item": [
            {"type": "source", "resource": {"display": "a"}},
            {"type": "alternate", "resource": {"display": "b"}},
        ]
    },
    "StructureDefinition": {  # sdf-6, sdf-8a, sdf-14
        "type": "X",
        "differential": {"element": [{"id": "X", "path": "X"}]},
    },
    "TerminologyCapabilities": {"software": {"name": "x"}},  # tcp-2, tcp-4
    # a criteria Socle can run (docs/platform.md)
    "Subscription": {
        "status": "requested",
        "criteria": "Patient?family=x",
        "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"},
    },
}


def _value(el: dict[str, Any], t: str, path: str, build: Any) -> Any:
    coded = _code(el)
    if t == "code":
        return coded[1] if coded else "x"
    if t in ("CodeableConcept", "Coding"):
        coding = {"system": coded[0], "code": coded[1]} if coded else {"display": "x"}
        if coded and not coded[0]:
            coding.pop("system")
        return {"coding": [coding]} if t == "CodeableConcept" else coding
    if t in PRIMITIVES:
        return PRIMITIVES[t]
    if t in ("BackboneElement", "Element"):
        inner = build(path)
        return inner or {"extension": [{"url": "http://example.org/x", "valueString": "x"}]}
    return dict(
        COMPLEX.get(t, {"extension": [{"url": "http://example.org/x", "valueString": "x"}]})
    )
