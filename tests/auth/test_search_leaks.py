"""No search reveals what its caller cannot read: a differential check over real HTTP.

For each principal, every search below — chains (typed and untyped, nested), reverse chains
(`_has`, nested), `_list`, composites inside chains, `_total`, `_count=0`, includes — must return
exactly what a brute force gives: the resources the principal can read one by one (GET → 200),
matched in Python using, for every hop, only resources that principal can read.

The world holds references across patients written by the platform operator (an observation of W
grouping one of X's, an observation of Y about X, a list of X's naming Y's observation): the
probes an attacker would make through them must find nothing they could not read directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .world import World, make_world

LOINC = "http://loinc.org"
Resource = dict[str, Any]


@dataclass
class Seen:
    """What one principal can read, by (type, id)."""

    readable: dict[tuple[str, str], Resource]

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for (t, _), r in self.readable.items() if t == rtype]


Match = Callable[[Resource, Seen], bool]


@dataclass
class Crit:
    """A search criterion as written and the same criterion in Python."""

    name: str
    value: str
    match: Match


def _refs(value: Any) -> list[tuple[str, str]]:
    out = []
    for v in value if isinstance(value, list) else [value] if value else []:
        ref = v.get("reference") if isinstance(v, dict) else None
        if isinstance(ref, str) and "/" in ref:
            t, _, i = ref.partition("/")
            out.append((t, i))
    return out


def leaf(name: str, value: str, match: Callable[[Resource], bool]) -> Crit:
    return Crit(name, value, lambda r, _seen: match(r))


def chain(param: str, element: str, target: str, inner: Crit, typed: bool = True) -> Crit:
    """``param[:target].inner``: some readable ``target`` the element points at matches."""

    def match(r: Resource, seen: Seen) -> bool:
        return any(
            t == target and (t, i) in seen.readable and inner.match(seen.readable[(t, i)], seen)
            for t, i in _refs(r.get(element))
        )

    name = f"{param}:{target}.{inner.name}" if typed else f"{param}.{inner.name}"
    return Crit(name, inner.value, match)


def has(source: str, param: str, element: str, inner: Crit) -> Crit:
    """``_has:source:param:inner``: some readable ``source`` points at the row and matches."""

    def match(r: Resource, seen: Seen) -> bool:
        me = (r["resourceType"], r["id"])
        return any(
            me in _refs(s.get(element)) and inner.match(s, seen) for s in seen.of_type(source)
        )

    return Crit(f"_has:{source}:{param}:{inner.name}", inner.value, match)


def _family(prefix: str) -> Callable[[Resource], bool]:
    return lambda r: any(
        (n.get("family") or "").lower().startswith(prefix.lower()) for n in r.get("name") or []
    )


def _code(code: str) -> Callable[[Resource], bool]:
    def match(r: Resource) -> bool:
        codings = (r.get("code") or {}).get("coding") or []
        return any(c.get("system") == LOINC and c.get("code") == code for c in codings)

    return match


def _above(n: float) -> Callable[[Resource], bool]:
    return lambda r: (r.get("valueQuantity") or {}).get("value", -1e9) > n


def _searches(w: World) -> list[tuple[str, Crit]]:
    i, u = w.ids, w.u
    heart = leaf("code", f"{LOINC}|8867-4", _code("8867-4"))
    over_51 = leaf("value-quantity", "gt51", _above(51))
    composite = leaf(
        "code-value-quantity",
        f"{LOINC}|8867-4$gt51",
        lambda r: _code("8867-4")(r) and _above(51)(r),
    )
    name_x = leaf("name", f"PatX{u}", _family(f"PatX{u}"))
    name_y = leaf("name", f"PatY{u}", _family(f"PatY{u}"))
    any_pat = leaf("name", "Pat", _family("Pat"))
    in_list = leaf("code", f"{LOINC}|{w.list_code}", _code(w.list_code))
    return [
        # the leak's first probes: a member's value, through one's own observation
        ("Observation", chain("has-member", "hasMember", "Observation", over_51)),
        ("Observation", chain("has-member", "hasMember", "Observation", heart, typed=False)),
        ("Observation", chain("has-member", "hasMember", "Observation", composite)),
        ("Observation", chain("focus", "focus", "Patient", name_x)),
        ("Observation", chain("subject", "subject", "Patient", any_pat)),
        ("Observation", chain("derived-from", "derivedFrom", "Observation", heart)),
        # where a person was treated, from their name
        (
            "Organization",
            has(
                "Encounter",
                "service-provider",
                "serviceProvider",
                chain("subject", "subject", "Patient", name_x),
            ),
        ),
        (
            "Organization",
            has(
                "Encounter",
                "service-provider",
                "serviceProvider",
                chain("patient", "subject", "Patient", name_y, typed=False),
            ),
        ),
        (
            "Organization",
            has(
                "Encounter",
                "service-provider",
                "serviceProvider",
                leaf(
                    "subject",
                    f"Patient/{i['X']}",
                    lambda r: ("Patient", i["X"]) in _refs(r.get("subject")),
                ),
            ),
        ),
        (
            "Practitioner",
            has(
                "CareTeam",
                "participant",
                "_participants",
                chain("subject", "subject", "Patient", any_pat),
            ),
        ),
        ("Patient", has("Observation", "subject", "subject", heart)),
        # nested reverse chains: patients with an observation named by a list of that code
        (
            "Patient",
            has("Observation", "subject", "subject", has("List", "item", "_items", in_list)),
        ),
    ]


def _list_members(w: World) -> Crit:
    lid = w.ids["list-X"]
    return Crit(
        "_list",
        lid,
        lambda r, seen: (
            ("List", lid) in seen.readable
            and (r["resourceType"], r["id"]) in _refs(seen.readable[("List", lid)].get("_items"))
        ),
    )


def _flatten(resource: Resource) -> Resource:
    """Derived elements the brute force matches on (CareTeam members, List items)."""
    out = dict(resource)
    if resource["resourceType"] == "CareTeam":
        out["_participants"] = [p.get("member") for p in resource.get("participant") or []]
    if resource["resourceType"] == "List":
        out["_items"] = [e.get("item") for e in resource.get("entry") or []]
    return out


def _add_cross_patient_references(w: World, c: httpx.Client) -> None:
    """References the operator may write across records (a data-quality mistake, a merge)."""
    i, u = w.ids, w.u

    def put(key: str, resource: Resource) -> None:
        rid = f"{key}-{u}"
        r = c.put(f"/{resource['resourceType']}/{rid}", json={**resource, "id": rid})
        assert r.status_code in (200, 201), r.text
        w.ids[key] = rid

    put(
        "obs-W-members",
        {
            **w.observation("W"),
            "valueQuantity": {"value": 10, "unit": "/min"},
            "hasMember": [{"reference": f"Observation/{i['obs-X']}"}],
            "derivedFrom": [{"reference": f"Observation/{i['obs-Y']}"}],
        },
    )
    put(
        "enc-X",
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{i['X']}"},
            "serviceProvider": {"reference": f"Organization/{i['orgB']}"},
        },
    )
    w.list_code = "11503-0"
    put(
        "list-X",
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "code": {"coding": [{"system": LOINC, "code": w.list_code}]},
            "subject": {"reference": f"Patient/{i['X']}"},
            "entry": [
                {"item": {"reference": f"Observation/{i['obs-X']}"}},
                {"item": {"reference": f"Observation/{i['obs-Y']}"}},
            ],
        },
    )


@pytest.fixture(scope="module")
def world(server) -> World:
    w = make_world(server)
    with w.client("operator") as c:
        _add_cross_patient_references(w, c)
    return w


PRINCIPALS = [
    "patient:X",
    "patient:Y",
    "patient:W",
    "practitioner:care",
    "practitioner:enc",
    "practitioner:mt",
    "practitioner:none",
    "system:orgA",
    "ars",
    "operator",
]


def _client(w: World, who: str) -> httpx.Client:
    kind, _, key = who.partition(":")
    if kind == "patient":
        return w.client(f"patient:{w.ids[key]}")
    if kind == "practitioner":
        return w.pro(key)
    if kind == "system":
        return w.client(f"system:his-{w.u}:{w.ids[key]}")
    return w.client(kind)


def _world_resources(w: World) -> dict[tuple[str, str], Resource]:
    with w.client("operator") as c:
        out = {}
        for rid in w.ids.values():
            for rtype in _TYPES:
                r = c.get(f"/{rtype}/{rid}")
                if r.status_code == 200:
                    out[(rtype, rid)] = _flatten(r.json())
                    break
        return out


_TYPES = (
    "Patient",
    "Observation",
    "Encounter",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "CareTeam",
    "Consent",
    "List",
)


def _matches(c: httpx.Client, rtype: str, params: dict[str, Any]) -> tuple[set[str], Any, set]:
    r = c.get(f"/{rtype}", params={**params, "_total": "accurate", "_count": 1000})
    if r.status_code == 403:
        return set(), 0, set()
    assert r.status_code == 200, (rtype, params, r.text)
    page = r.json()
    assert not any(lk["relation"] == "next" for lk in page["link"]), "one page expected"
    entries = page.get("entry", [])
    found = {e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"}
    included = {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in entries
        if e["search"]["mode"] == "include"
    }
    return found, page.get("total"), included


@pytest.mark.parametrize("who", PRINCIPALS)
def test_searches_see_exactly_what_brute_force_over_readable_resources_gives(world, who):
    everything = _world_resources(world)
    ours = set(world.ids.values())
    with _client(world, who) as c:
        readable = {
            key: res
            for key, res in everything.items()
            if c.get(f"/{key[0]}/{key[1]}").status_code == 200
        }
        seen = Seen(readable)
        cases = [*_searches(world), ("Observation", _list_members(world))]
        mismatches = []
        for rtype, crit in cases:
            expected = {
                r["id"] for r in seen.of_type(rtype) if crit.match(r, seen) and r["id"] in ours
            }
            found, total, _ = _matches(c, rtype, {crit.name: crit.value, "_id": ",".join(ours)})
            if found != expected or total != len(found):
                mismatches.append((crit.name, crit.value, sorted(expected), sorted(found), total))
            # a count alone must agree as well
            r = c.get(
                f"/{rtype}",
                params={crit.name: crit.value, "_id": ",".join(ours), "_summary": "count"},
            )
            if r.status_code == 200 and r.json().get("total") != len(expected):
                mismatches.append((crit.name, "_summary=count", len(expected), r.json()["total"]))
        # includes bring exactly the readable targets of what matched
        for inc, element in (
            ("Observation:has-member", "hasMember"),
            ("Observation:focus", "focus"),
        ):
            found, _, included = _matches(
                c, "Observation", {"_id": ",".join(ours), "_include": inc}
            )
            targets = {
                ref for oid in found for ref in _refs(readable[("Observation", oid)].get(element))
            }
            matched = {("Observation", oid) for oid in found}
            if included != {t for t in targets if t in readable} - matched:
                mismatches.append((inc, sorted(included), sorted(targets)))
    assert not mismatches, (who, mismatches)


def test_a_patient_cannot_point_his_own_data_at_another_record(world):
    i = world.ids
    with world.client(f"patient:{i['W']}") as c:
        probe = {
            **world.observation("W"),
            "hasMember": [{"reference": f"Observation/{i['obs-X']}"}],
        }
        r = c.post("/Observation", json=probe)
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["expression"] == ["Observation.hasMember[0]"]
        # the same answer for a resource that does not exist: no oracle
        probe["hasMember"] = [{"reference": "Observation/does-not-exist"}]
        missing = c.post("/Observation", json=probe)
        assert missing.status_code == 422
        assert missing.json()["issue"][0]["code"] == issue["code"] == "not-found"
        # pointing at one's own data and at the directory is fine
        probe["hasMember"] = [{"reference": f"Observation/{i['obs-W']}"}]
        probe["performer"] = [{"reference": f"Practitioner/{i['pr-care']}"}]
        assert c.post("/Observation", json=probe).status_code == 201
    with world.pro("care") as c:  # sees X, not Y
        bad = {**world.observation("X"), "focus": [{"reference": f"Patient/{i['Y']}"}]}
        r = c.post("/Observation", json=bad)
        assert r.status_code == 422 and r.json()["issue"][0]["expression"] == [
            "Observation.focus[0]"
        ]
        # a Bundle names the entry
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": world.observation("X"),
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
            ],
        }
        r = c.post("/", json=bundle)
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.focus[0]"]


def test_references_must_name_existing_resources(client):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/None"},
    }
    r = client.post("/Observation", json=obs)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["Observation.subject"]
    r = client.put("/Observation/ri-1", json={**obs, "id": "ri-1"})
    assert r.status_code == 422
    # a reference to an entry of the same transaction is fine
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6d7e4f4c-2b1a-4d3e-9f00-000000000001",
                "resource": {"resourceType": "Patient", "name": [{"family": "Integrity"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    **obs,
                    "subject": {"reference": "urn:uuid:6d7e4f4c-2b1a-4d3e-9f00-000000000001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert client.post("/", json=bundle).status_code == 200


def test_a_read_by_id_agrees_with_the_search_on_rows_of_no_patient(world):
    """A clinical resource of no patient is in nobody's record: a patient or a professional
    neither finds it by search nor reads it by id; the ARS analyst (non-nominative) does both."""
    with world.client("operator") as op:
        orphan = {"resourceType": "Observation", "status": "final", "code": {"text": "lot"}}
        oid = op.post("/Observation", json=orphan).json()["id"]
    for who in ("patient:X", "practitioner:care", "practitioner:mt"):
        with _client(world, who) as c:
            assert c.get(f"/Observation/{oid}").status_code == 403, who
            assert not _matches(c, "Observation", {"_id": oid})[0], who
    with world.client("ars") as c:
        assert c.get(f"/Observation/{oid}").status_code == 200
        assert _matches(c, "Observation", {"_id": oid})[0] == {oid}
    with world.client(f"patient:{world.ids['X']}") as c:  # nor may a patient write one
        assert c.post("/Observation", json=orphan).status_code == 403
