"""Benchmark the structural validator on typical clinical resources; prints JSON.

    .venv/bin/python bench/validation.py [--seconds 2] [--no-fhirpath] [--region 300]

Resources are the hand-written examples in tests/fhir/validation/examples (decoded with
`socle.fhir.json.decode`, so decimals are Decimal). Reports compile time, overall resources/s
on one core over a typical mix (Bundles excluded), and µs per resource by file. With
`--no-fhirpath`, the R4 invariants without a hand translation (evaluated by fhirpathpy) are left
out, for comparison. Times are the process's CPU time, so that a figure taken on a busy host
still means "on one core". With `--region N`, also the resources of an N-patient synthetic region
(`socle.region.generate`, round-tripped through JSON), each validated once: resources/s and the
issues found, by message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socle.fhir.json import decode  # noqa: E402

EXAMPLES = ROOT / "tests/fhir/validation/examples"
TYPICAL = (
    "Patient",
    "Observation",
    "Encounter",
    "Condition",
    "Practitioner",
    "Organization",
    "MedicationRequest",
    "AllergyIntolerance",
    "Immunization",
    "Procedure",
    "DocumentReference",
    "DiagnosticReport",
    "PractitionerRole",
)


def _time(fn, resource, seconds: float) -> tuple[int, float]:
    n, start = 0, time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn(resource)
        n += 200
        now = time.process_time()
        if now >= deadline:
            return n, now - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0.5, help="per resource")
    parser.add_argument(
        "--no-fhirpath",
        action="store_true",
        help="without the invariants evaluated by fhirpathpy (hand translations only)",
    )
    parser.add_argument(
        "--region", type=int, default=0, help="also validate an N-patient synthetic region"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    from socle.fhir.validation import Validator
    from socle.fhir.validation.compiler import Compiled

    validator = Validator(Compiled(with_fhirpath=not args.no_fhirpath))
    compile_s = time.perf_counter() - t0

    per_file: dict[str, float] = {}
    total_n, total_t = 0, 0.0
    errors: dict[str, int] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = decode(path.read_bytes())
        issues = validator.validate(resource)
        errors[path.stem] = sum(1 for i in issues if i.severity == "error")
        n, elapsed = _time(validator.validate, resource, args.seconds)
        per_file[f"{resource['resourceType']}:{path.stem}"] = round(elapsed / n * 1e6, 1)
        if resource["resourceType"] in TYPICAL:
            total_n += n
            total_t += elapsed
    out = {
        "fhirpath_invariants": not args.no_fhirpath,
        "compile_seconds": round(compile_s, 3),
        "typical_resources_per_second": round(total_n / total_t),
        "typical_mean_us": round(total_t / total_n * 1e6, 1),
        "us_per_resource": per_file,
        "errors_found": {k: v for k, v in errors.items() if v},
    }
    if args.region:
        out["region"] = _region(validator, args.region)
    print(json.dumps(out, indent=2))


def _region(validator, patients: int) -> dict:
    from socle.fhir.json import encode
    from socle.region.generate import iter_blocks

    resources = [decode(encode(r)) for block in iter_blocks(patients, 1) for r in block]
    issues: dict[str, int] = {}
    start = time.process_time()
    for r in resources:
        for i in validator.validate(r):
            key = f"{i.severity}: {i.diagnostics[:90]}"
            issues[key] = issues.get(key, 0) + 1
    elapsed = time.process_time() - start
    return {
        "resources": len(resources),
        "resources_per_second": round(len(resources) / elapsed),
        "issues": issues,
    }


if __name__ == "__main__":
    main()
