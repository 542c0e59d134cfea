"""Agreement of Socle's validator with the HL7 (Java) validator's own R4 test cases; prints JSON.

    .venv/bin/python scripts/hl7_agreement.py /tmp/hl7-cases [--index /tmp/hl7-cases/index.json]

The case files come from the public repository FHIR/fhir-test-cases (folder `validator/`); they are
not part of Socle. `index.json` lists the cases run: `[{file, errorCount, output}]`, where
`errorCount` and `output` are the reference validator's expected outcome (`java` in the
repository's `manifest.json`). Each resource is decoded as the server decodes a request body and
validated in process by `get_validator().validate`, the call `$validate` and every write make.

A case agrees when both say "errors" or both say "no errors". A disagreement is *out of scope*
when every error the reference validator reports that Socle does not is of a kind Socle
deliberately does not check (`OUT_OF_SCOPE`, see docs/validation.md): a terminology server's
answer, fetching what a reference or canonical points to, the unknown-extension policy, or the
reference validator's "examples" mode. Any other disagreement is a real miss (Socle sees no
error where Java does) or a false refusal (Socle refuses what Java accepts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socle.fhir.json import decode  # noqa: E402
from socle.fhir.outcome import FhirError  # noqa: E402

#: (reason, pattern on a reference-validator message): the kinds of error Socle does not check.
OUT_OF_SCOPE: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "terminology server: the code or its version is checked against an external code system "
        "(SNOMED CT, LOINC, CVX, UCUM...) by tx.fhir.org",
        re.compile(
            r"tx\.fhir\.org|local\.fhir\.org|is not valid in the system|Unknown Code System"
            r"|of the code system .* is not known|unable to find code|Error processing Unit"
            r"|is not declared in the base CodeSystem"
        ),
    ),
    (
        "display of an external code system (needs its full content)",
        re.compile(r"is not a valid display|Display Name for"),
    ),
    (
        "resolution: nothing a reference or canonical points to is fetched while validating",
        re.compile(
            r"Unable to resolve resource \"?[A-Z]|does not resolve|could not be resolved"
            r"|refers to a resource that has the wrong type"
        ),
    ),
    (
        "unknown extension: Socle's policy is a warning by default "
        "(SOCLE_UNKNOWN_EXTENSION_SEVERITY=error to refuse)",
        re.compile(r"The extension \S+ is unknown, and not allowed here"),
    ),
    (
        "examples mode of the reference validator (example.org URLs refused)",
        re.compile(r"Example URLs are not allowed"),
    ),
)

#: Cases whose manifest output does not say what the error is (empty, or copied from another
#: case): what the reference validator checks there, read from the case itself.
EXPECTED_BY_HAND = {
    "capstmt.json": "CapabilityStatement searchParam type 'date' for a token search parameter",
    "cs-meta-profile.json": "meta.profile is a JSON string, not an array",
    "risk-assessment-probability-range.json": "ras-2: probabilityDecimal 101 > 100",
}

#: Out-of-scope cases whose manifest output lists no error line to classify.
OUT_OF_SCOPE_BY_HAND = {
    "dr-example-org.json": 'examples mode of the reference validator ("examples": false): '
    "its one error is about the example.org attachment URL, which it tries to resolve",
}

#: False refusals where Socle keeps its reading of the R4 text (the manifest's expectation
#: predates or ignores the rule): reported, still counted as disagreements.
KEPT = {
    "bundle-duplicate-id.json": "R4 RelatedPerson.patient is 1..1; the case's RelatedPerson "
    "has none (the case is about duplicate ids)",
    "bundle-with-contained.json": "R4 bundle.html: a RESTful fullUrl SHALL NOT disagree with "
    "the resource's id (…/MessageHeader/LabelerCodeRequestMessage vs id "
    "SampleLabelerCodeRequestMessage)",
    "mni-patientOverview-bundle-example1.json": "R4 json.html: no empty arrays "
    "(Composition.section: []); the reference validator reports the same in empty-array.json "
    "and list-empty2.json",
}


def _is_error(line: str) -> bool:
    head = line.lstrip().split(":", 1)[0].lower()
    return head not in ("warning", "information", "hint", "warning: warning")


def _out_of_scope_reason(case: dict[str, Any]) -> str | None:
    """The reason if every error Java reports is of a kind Socle deliberately leaves out."""
    if case["file"] in OUT_OF_SCOPE_BY_HAND:
        return OUT_OF_SCOPE_BY_HAND[case["file"]]
    if case["file"] in EXPECTED_BY_HAND:
        return None
    errors = [line for line in case.get("output") or [] if line and _is_error(line)]
    if not errors:
        return None
    reasons = []
    for line in errors:
        reason = next((r for r, pattern in OUT_OF_SCOPE if pattern.search(line)), None)
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(sorted(set(reasons)))


def _validate(path: Path) -> list[dict[str, Any]]:
    from socle.fhir.validation import get_validator

    try:
        resource = decode(path.read_bytes(), where=path.name)
    except FhirError as exc:  # not JSON: what the server answers before validating
        return [i.to_json() for i in exc.issues]
    return [i.to_json() for i in get_validator().validate(resource)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", type=Path, help="directory of the case files")
    parser.add_argument("--index", type=Path, help="default: <cases>/index.json")
    args = parser.parse_args()
    index = json.loads((args.index or args.cases / "index.json").read_text())

    agreements, misses, refusals, out_of_scope = 0, [], [], []
    for case in index:
        issues = _validate(args.cases / case["file"])
        socle_errors = [i for i in issues if i["severity"] in ("error", "fatal")]
        java_errors = case["errorCount"] > 0
        if bool(socle_errors) == java_errors:
            agreements += 1
            continue
        row = {
            "file": case["file"],
            "java_errorCount": case["errorCount"],
            "java_output": case.get("output") or [],
            "socle_issues": [
                f"{i['severity']}: {', '.join(i.get('expression', []))}: {i['diagnostics']}"
                for i in issues
            ],
        }
        if case["file"] in EXPECTED_BY_HAND:
            row["java_checks"] = EXPECTED_BY_HAND[case["file"]]
        if not java_errors:
            if case["file"] in KEPT:
                row["kept_because"] = KEPT[case["file"]]
            refusals.append(row)
        elif reason := _out_of_scope_reason(case):
            out_of_scope.append({**row, "reason": reason})
        else:
            misses.append(row)
    n = len(index)
    in_scope = n - len(out_of_scope)
    sys.stdout.write(
        json.dumps(
            {
                "cases": n,
                "agreements": agreements,
                "agreement_raw": round(agreements / n, 3) if n else None,
                "out_of_scope": len(out_of_scope),
                "agreement_in_scope": round(agreements / in_scope, 3) if in_scope else None,
                "real_misses": misses,
                "false_refusals": refusals,
                "out_of_scope_disagreements": out_of_scope,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
