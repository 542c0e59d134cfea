"""Walk FHIR JSON against the compiled R4 tables and collect `Issue`s; never raises.

Locations are FHIRPath: `Patient.name[1].given[0]`, `Observation.value.ofType(Quantity).unit`,
`Bundle.entry[7].resource.subject`, `Patient.contained[0].name`; a primitive's extension sits at
`Patient.birthDate.extension[0]` (JSON `_birthDate`).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from ...config import unknown_extension_severity, unknown_profile_severity
from ..attachments import content_mismatches, decode_base64, sha1_digest
from ..outcome import Issue
from . import declared, profiles_fr
from .bundles import check_bundle
from .capability import check_search_params
from .compiler import Compiled, Element, Node
from .declared import in_codes
from .extensions import ExtensionChecker
from .primitives import Warn, is_absolute_uri, json_kind

#: Severity of the issue raised for a profile in `meta.profile` that this validator does not know:
#: "warning" (default; the resource is still checked against its base definition) or "error".
UNKNOWN_PROFILE_SEVERITY = unknown_profile_severity()

_REL_REF = re.compile(
    r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/([A-Za-z0-9\-\.]{1,64}))?"
)
_ABS_TAIL = re.compile(
    r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/[A-Za-z0-9\-\.]{1,64})?$"
)
_COND_REF = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
_ABS_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
# any other absolute URI (RFC 3986 scheme ":" ...), e.g. a Bundle's `resource:0` fullUrl
_ABS_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_UUID = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")

_ROOT, _CONTAINED, _EMBEDDED = 0, 1, 2


class _Ctx:
    """Per-resource state: contained resources, local references, Bundle fullUrls."""

    __slots__ = (
        "contained",
        "local_refs",
        "self_refs",
        "current",
        "bundle_urls",
        "res",
        "root",
        "element_ids",
    )

    def __init__(self, bundle_urls: dict[str, str] | None, root: Any = None) -> None:
        self.contained: dict[str, str | None] = {}  # contained id -> resourceType
        self.local_refs: set[str] = set()  # ids referenced as `#id`
        self.self_refs: set[str] = set()  # contained ids whose resource references `#`
        self.current: str | None = None  # id of the contained resource being walked
        self.bundle_urls = bundle_urls  # fullUrl -> resourceType, inside a Bundle
        self.res = root  # FHIRPath %resource: the resource being walked (contained or not)
        self.root = root  # FHIRPath %rootResource
        # (contained id or None, element id) -> where it was first seen: unique per resource
        self.element_ids: dict[tuple[str | None, str], str] | None = None


class Validator:
    """A compiled validator; use `get_validator()` for the shared instance."""

    def __init__(
        self, compiled: Compiled | None = None, *, unknown_extensions: str | None = None
    ) -> None:
        self.c = compiled or Compiled()
        nodes = self.c.nodes
        self._element_node = nodes["Element"]
        self._ext_node = nodes["Extension"]
        self._attachment_node = nodes["Attachment"]
        self._resource_types = self.c.resource_types
        self._canonical_resources = self.c.canonical_resources
        self._profiles = profiles_fr.profile_rules()
        self._ext = ExtensionChecker(
            {**self.c.extensions, **profiles_fr.FR_EXTENSIONS},
            self.c.type_ancestors,
            profiles_fr.extension_rules(),
            unknown_extensions or unknown_extension_severity(),
        )
        self._text = self.c.constraint_text

    # --- public -------------------------------------------------------------------------------

    def validate(self, resource: Any, *, profile: str | None = None) -> list[Issue]:
        """Issues found in `resource` (decoded FHIR JSON); empty or non-error means valid."""
        issues: list[Issue] = []
        try:
            self._resource(resource, None, issues, None, _ROOT, profile)
        except RecursionError:
            issues.append(Issue("error", "too-costly", "The resource is nested too deeply"))
        except Exception as exc:  # the validator reports, it never throws
            issues.append(
                Issue(
                    "error", "exception", f"Internal validator error: {type(exc).__name__}: {exc}"
                )
            )
        return issues

    def known_profiles(self) -> frozenset[str]:
        return frozenset(self._profiles) | frozenset(self.c.core_profiles)

    # --- resources ----------------------------------------------------------------------------

    def _resource(
        self,
        res: Any,
        path: str | None,
        issues: list[Issue],
        parent: _Ctx | None,
        mode: int,
        profile: str | None = None,
    ) -> None:
        where = (path,) if path else ()
        if type(res) is not dict:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"A resource must be a JSON object, found {json_kind(res)}",
                    where,
                )
            )
            return
        rt = res.get("resourceType")
        if rt is None:
            issues.append(Issue("error", "required", "The resource has no resourceType", where))
            return
        if type(rt) is not str or rt not in self._resource_types:
            issues.append(Issue("error", "structure", f"Unknown resourceType {rt!r}", where))
            return
        node = self.c.nodes[rt]
        if path is None:
            path = rt
        if mode == _CONTAINED:
            ctx = parent
            assert ctx is not None
            self._contained_rules(res, path, issues)
            rid = res.get("id")
            previous, ctx.current = ctx.current, rid if type(rid) is str else None
            container, ctx.res = ctx.res, res
            self._walk(node, res, path, issues, ctx)
            ctx.current, ctx.res = previous, container
        else:
            ctx = _Ctx(parent.bundle_urls if parent is not None else None, res)
            contained = res.get("contained")
            if type(contained) is list:
                for c in contained:
                    if type(c) is dict and type(c.get("id")) is str:
                        ctype = c.get("resourceType")
                        ctx.contained[c["id"]] = ctype if type(ctype) is str else None
            if rt == "Bundle":
                ctx.bundle_urls = self._bundle_urls(res)
            self._walk(node, res, path, issues, ctx)
            if type(contained) is list:
                self._dom_3(contained, path, issues, ctx)
            if rt == "Bundle":
                check_bundle(res, path, issues, self._constraint, self._resource_types)
        if "extension" in res or "modifierExtension" in res:
            names = (
                (rt, "Resource", "DomainResource") if "text" in node.elements else (rt, "Resource")
            )
            self._ext.element(res, names, path, issues)
        if rt == "CapabilityStatement":
            check_search_params(res, path, issues)
        if rt in self._canonical_resources:
            url = res.get("url")
            if type(url) is str and url and not is_absolute_uri(url):
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"{rt}.url {url[:80]!r} must be an absolute URI: it is the canonical "
                        "identifier other resources refer to it by",
                        (f"{path}.url",),
                    )
                )
        self._check_profiles(res, rt, path, issues, profile)

    def _contained_rules(self, res: dict[str, Any], path: str, issues: list[Issue]) -> None:
        if "contained" in res:
            self._constraint(issues, "dom-2", f"{path}.contained")
        meta = res.get("meta")
        if type(meta) is dict:
            if "versionId" in meta or "lastUpdated" in meta:
                self._constraint(issues, "dom-4", f"{path}.meta")
            if "security" in meta:
                self._constraint(issues, "dom-5", f"{path}.meta.security")

    def _dom_3(self, contained: list[Any], path: str, issues: list[Issue], ctx: _Ctx) -> None:
        for i, c in enumerate(contained):
            if type(c) is not dict:
                continue
            cid = c.get("id")
            if type(cid) is not str:
                self._constraint(
                    issues, "dom-3", f"{path}.contained[{i}]", "the contained resource has no id"
                )
            elif cid not in ctx.local_refs and cid not in ctx.self_refs:
                self._constraint(
                    issues, "dom-3", f"{path}.contained[{i}]", f"nothing references '#{cid}'"
                )

    def _bundle_urls(self, bundle: dict[str, Any]) -> dict[str, str]:
        urls: dict[str, str] = {}
        entries = bundle.get("entry")
        if type(entries) is list:
            for e in entries:
                if type(e) is dict:
                    url, res = e.get("fullUrl"), e.get("resource")
                    if (
                        type(url) is str
                        and type(res) is dict
                        and type(res.get("resourceType")) is str
                    ):
                        urls[url] = res["resourceType"]
        return urls

    def _check_profiles(
        self, res: dict[str, Any], rt: str, path: str, issues: list[Issue], extra: str | None
    ) -> None:
        claimed: list[tuple[Any, str]] = []
        meta = res.get("meta")
        if type(meta) is dict and type(meta.get("profile")) is list:
            claimed = [(p, f"{path}.meta.profile[{i}]") for i, p in enumerate(meta["profile"])]
        if extra:
            claimed.append((extra, path))
        for url, where in claimed:
            if type(url) is not str:
                continue  # already reported as a wrong JSON type
            canonical = url.split("|")[0]
            core = self.c.core_profiles.get(canonical)
            rule = self._profiles.get(canonical)
            applies_to = core or (rule.resource_type if rule else declared.PROFILES.get(canonical))
            if applies_to is not None and applies_to != rt:
                issues.append(
                    Issue(
                        "error", "invalid", f"Profile {url} is for {applies_to}, not {rt}", (where,)
                    )
                )
                continue
            if rule is not None:
                rule.check(res, path, issues)
            elif core is None and canonical not in declared.PROFILES:
                hint = (
                    "an HL7 profile this validator does not enforce"
                    if canonical in self.c.other_profiles
                    else "not known to this validator"
                )
                issues.append(
                    Issue(
                        UNKNOWN_PROFILE_SEVERITY,
                        "not-supported",
                        f"Profile {url} is {hint}; the resource was checked against the base "
                        f"{rt} definition only",
                        (where,),
                    )
                )

    # --- elements -----------------------------------------------------------------------------

    def _walk(
        self, node: Node, obj: dict[str, Any], path: str, issues: list[Issue], ctx: _Ctx
    ) -> None:
        elements = node.elements
        seen_choice: dict[str, str] | None = None
        for key, val in obj.items():
            el = elements.get(key)
            if el is None:
                if key[:1] == "_":
                    self._primitive_extension(node, key, val, obj, path, issues, ctx)
                elif not (key == "resourceType" and node.is_resource):
                    self._unknown(node, key, path, issues)
                continue
            if el.choice is not None:
                if seen_choice is None:
                    seen_choice = {}
                other = seen_choice.get(el.choice)
                if other is not None:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"Only one {el.choice}[x] is allowed, found both '{other}' and '{key}'",
                            (f"{path}.{el.choice}",),
                        )
                    )
                    continue
                seen_choice[el.choice] = key
            if el.prohibited:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{el.owner} is not allowed here (maximum cardinality 0)",
                        (f"{path}.{el.label}",),
                    )
                )
                continue
            if val is None:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{key} is null; omit the element instead",
                        (f"{path}.{el.label}",),
                    )
                )
                continue
            check = el.check
            if el.array:
                if type(val) is not list:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{el.owner} must be a JSON array, found {json_kind(val)}",
                            (f"{path}.{el.label}",),
                        )
                    )
                    continue
                if not val:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{el.owner} is an empty array; omit the element instead",
                            (f"{path}.{el.label}",),
                        )
                    )
                    continue
                if el.max >= 0 and len(val) > el.max:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{el.owner} allows at most {el.max} item(s), found {len(val)}",
                            (f"{path}.{el.label}",),
                        )
                    )
                if check is not None:
                    for i, item in enumerate(val):
                        if item is None:
                            exts = obj.get("_" + key)
                            if type(exts) is not list or i >= len(exts) or exts[i] is None:
                                issues.append(
                                    Issue(
                                        "error",
                                        "structure",
                                        f"{el.owner} item is null with no extension in '_{key}'",
                                        (f"{path}.{el.label}[{i}]",),
                                    )
                                )
                            continue
                        self._primitive(el, check, item, f"{path}.{el.label}[{i}]", issues, ctx)
                else:
                    base = f"{path}.{el.label}"
                    for i, item in enumerate(val):
                        self._complex(el, item, f"{base}[{i}]", issues, ctx)
            elif type(val) is list:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"{el.owner} takes a single value, not a JSON array",
                        (f"{path}.{el.label}",),
                    )
                )
            elif check is not None:
                self._primitive(el, check, val, f"{path}.{el.label}", issues, ctx)
            else:
                self._complex(el, val, f"{path}.{el.label}", issues, ctx)
        for keys, label in node.required:
            for k in keys:
                if k in obj:
                    break
            else:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{node.name}.{label} is required (minimum cardinality 1) but missing",
                        (f"{path}.{label}",),
                    )
                )
        if node.invariants:
            _check_invariants(node.invariants, obj, path, issues, ctx)

    def _complex(self, el: Element, val: Any, path: str, issues: list[Issue], ctx: _Ctx) -> None:
        if type(val) is not dict:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{el.owner} must be a JSON object ({el.type}), found {json_kind(val)}",
                    (path,),
                )
            )
            return
        if el.resource:
            self._resource(
                val, path, issues, ctx, _CONTAINED if el.key == "contained" else _EMBEDDED
            )
            return
        if not val or (len(val) == 1 and "id" in val):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"ele-1: {el.owner} must have a value or child elements "
                    "(found an empty object)",
                    (path,),
                )
            )
            return
        eid = val.get("id")
        if type(eid) is str and el.type != "ElementDefinition":
            # an ElementDefinition's id is its path, repeated by snapshot and differential
            _element_id(eid, path, issues, ctx)
        node = el.node
        if node is None:
            return
        self._walk(node, val, path, issues, ctx)
        if ("extension" in val or "modifierExtension" in val) and el.type != "Extension":
            # a complex extension's own parts are checked with it, by its definition
            self._ext.element(val, (el.owner, node.name, el.type), path, issues)
        if node is self._ext_node:
            self._extension(val, path, issues)
        elif node is self._attachment_node:
            _attachment_content(val, path, issues)
        elif el.reference:
            self._reference(el, val, path, issues, ctx)
        if el.codes is not None:
            self._coded(el, val, path, issues)
        if el.invariants:
            _check_invariants(el.invariants, val, path, issues, ctx)

    def _primitive_extension(
        self,
        node: Node,
        key: str,
        val: Any,
        obj: dict[str, Any],
        path: str,
        issues: list[Issue],
        ctx: _Ctx,
    ) -> None:
        el = node.elements.get(key[1:])
        if el is None or el.check is None:
            self._unknown(node, key, path, issues)
            return
        where = f"{path}.{el.label}"
        if el.array:
            if type(val) is not list or not val:
                issues.append(
                    Issue("error", "structure", f"'{key}' must be a non-empty JSON array", (where,))
                )
                return
            values = obj.get(key[1:])
            if values is not None and (type(values) is not list or len(values) != len(val)):
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"'{key}' must have one item (or null) per item of '{key[1:]}'",
                        (where,),
                    )
                )
            for i, item in enumerate(val):
                if item is None:
                    if type(values) is not list or i >= len(values) or values[i] is None:
                        issues.append(
                            Issue(
                                "error",
                                "structure",
                                f"'{key}[{i}]' and '{key[1:]}[{i}]' are both null",
                                (f"{where}[{i}]",),
                            )
                        )
                    continue
                self._element_extension(el, item, f"{where}[{i}]", issues, ctx)
        elif type(val) is list:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"'{key}' takes a single JSON object, not an array",
                    (where,),
                )
            )
        else:
            self._element_extension(el, val, where, issues, ctx)

    def _element_extension(
        self, el: Element, val: Any, path: str, issues: list[Issue], ctx: _Ctx
    ) -> None:
        if type(val) is not dict:
            issues.append(
                Issue(
                    "error",
                    "structure",
                    "A primitive's extension must be a JSON object with id/extension, "
                    f"found {json_kind(val)}",
                    (path,),
                )
            )
            return
        if not val or (len(val) == 1 and "id" in val):
            issues.append(
                Issue("error", "invalid", "ele-1: the primitive extension object is empty", (path,))
            )
            return
        self._walk(self._element_node, val, path, issues, ctx)
        if "extension" in val:
            self._ext.element(val, (el.owner, el.type), path, issues)

    # --- messages -----------------------------------------------------------------------------

    def _unknown(self, node: Node, key: str, path: str, issues: list[Issue]) -> None:
        hint = ""
        for group, types in node.choices.items():
            if key.startswith(group) and key[len(group) : len(group) + 1].isupper():
                hint = f"; {node.name}.{group}[x] allows only " + ", ".join(types)
                break
        else:
            close = difflib.get_close_matches(key, list(node.elements), n=1, cutoff=0.75)
            if close:
                hint = f"; did you mean '{close[0]}'?"
        issues.append(
            Issue(
                "error",
                "structure",
                f"Unknown element '{key}' in {node.name}{hint}",
                (f"{path}.{key}",),
            )
        )

    def _primitive(
        self, el: Element, check: Any, value: Any, where: str, issues: list[Issue], ctx: Any
    ) -> None:
        """Format, then required-binding code, then local `#id` references to resolve."""
        msg = check(value)
        if msg is not None:
            self._bad_value(el, msg, where, issues)
        elif el.code_values is not None and value not in el.code_values:
            self._bad_code(el, value, where, issues)
        elif el.hashref and value[:1] == "#":
            ctx.local_refs.add(value[1:])

    def _bad_value(self, el: Element, msg: str, path: str, issues: list[Issue]) -> None:
        code = "structure" if msg.startswith("expected a JSON") else "value"
        severity = "warning" if type(msg) is Warn else "error"
        issues.append(Issue(severity, code, f"{el.owner}: {msg}", (path,)))

    def _bad_code(self, el: Element, value: Any, path: str, issues: list[Issue]) -> None:
        # the binding's strength decided the severity at compile time (bindings.severity)
        title = self.c.valuesets.title(el.valueset)
        should = "" if el.strength == "required" else " (use a code from it where one fits)"
        issues.append(
            Issue(
                el.binding_severity,
                "code-invalid",
                f"{el.owner}: {str(value)[:80]!r} is not in the {el.strength} value set "
                f"'{title}' ({el.valueset}){should}",
                (path,),
            )
        )

    def _constraint(self, issues: list[Issue], key: str, path: str, detail: str = "") -> None:
        human, severity = self._text.get(key, ("", "error"))
        extra = f" ({detail})" if detail else ""
        issues.append(
            Issue(severity, "invariant", f"Constraint {key} failed: {human}{extra}", (path,))
        )

    # --- special types ------------------------------------------------------------------------

    def _coded(self, el: Element, val: dict[str, Any], path: str, issues: list[Issue]) -> None:
        codes = el.codes
        assert codes is not None and el.code_values is not None
        if el.type == "Coding":
            code, system = val.get("code"), val.get("system")
            if type(code) is not str:
                return
            known = in_codes(codes, system, code) if type(system) is str else code in el.code_values
            if not known:
                self._bad_code(el, code, f"{path}.code", issues)
        elif el.type == "CodeableConcept":
            codings = val.get("coding")
            if type(codings) is not list:
                if "text" in val and el.strength == "required":
                    title = self.c.valuesets.title(el.valueset)
                    issues.append(
                        Issue(
                            "error",
                            "code-invalid",
                            f"{el.owner}: no coding from the required value set '{title}' "
                            f"({el.valueset})",
                            (path,),
                        )
                    )
                return
            found: list[tuple[str, str]] = [
                (c["system"], c["code"])
                for c in codings
                if type(c) is dict and type(c.get("code")) is str and type(c.get("system")) is str
            ]
            if found and not any(in_codes(codes, s, c) for s, c in found):
                self._bad_code(el, found[0][1], f"{path}.coding[0].code", issues)

    def _extension(self, ext: dict[str, Any], path: str, issues: list[Issue]) -> None:
        # ext-1; what its definition says is checked from the element it sits on (extensions.py)
        has_value = False
        for k in ext:
            if k[:5] == "value" or k[:6] == "_value":
                has_value = True
                break
        if has_value == bool(ext.get("extension")):
            self._constraint(issues, "ext-1", path)

    def _reference(
        self, el: Element, val: dict[str, Any], path: str, issues: list[Issue], ctx: _Ctx
    ) -> None:
        ref = val.get("reference")
        if type(ref) is not str or not ref:
            return
        where = (f"{path}.reference",)
        target: str | None = None
        if ref[0] == "#":
            if ref == "#":
                if ctx.current is None:
                    self._constraint(
                        issues,
                        "ref-1",
                        where[0],
                        "'#' refers to the container, only from a contained resource",
                    )
                else:
                    ctx.self_refs.add(ctx.current)
                return
            local = ref[1:]
            ctx.local_refs.add(local)
            if local not in ctx.contained:
                self._constraint(
                    issues, "ref-1", where[0], f"no contained resource has id '{local}'"
                )
                return
            target = ctx.contained[local]
        elif ref.startswith("urn:uuid:"):
            if _UUID.fullmatch(ref) is None:
                issues.append(
                    Issue("error", "value", f"Invalid urn:uuid reference {ref[:80]!r}", where)
                )
                return
            if ctx.bundle_urls is not None:
                target = ctx.bundle_urls.get(ref)
        elif ref.startswith("urn:oid:"):
            if _OID.fullmatch(ref) is None:
                issues.append(
                    Issue("error", "value", f"Invalid urn:oid reference {ref[:80]!r}", where)
                )
            return
        elif "://" in ref and _COND_REF.fullmatch(ref) is None:
            if _ABS_URL.fullmatch(ref) is None:
                issues.append(
                    Issue("error", "value", f"Invalid absolute reference {ref[:80]!r}", where)
                )
                return
            if ctx.bundle_urls is not None and ref in ctx.bundle_urls:
                target = ctx.bundle_urls[ref]
            else:
                m = _ABS_TAIL.search(ref)
                if m is not None and m.group(1) in self._resource_types:
                    target = m.group(1)
        elif (m := _REL_REF.fullmatch(ref)) is None and _ABS_URI.fullmatch(ref) is not None:
            # R4 references.html: a reference is a relative or an absolute URL; inside a
            # Bundle it resolves to the entry whose fullUrl it is, whatever its scheme (a
            # conditional `Type?…` never has a scheme: `?` cannot be in one)
            if ctx.bundle_urls is not None:
                target = ctx.bundle_urls.get(ref)
        else:
            m = m or _COND_REF.fullmatch(ref)
            if m is None:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"Invalid reference {ref[:80]!r}: expected Type/id, an absolute URL, "
                        "urn:uuid:, urn:oid: or #contained-id",
                        where,
                    )
                )
                return
            if m.group(1) not in self._resource_types:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"Reference to unknown resource type {m.group(1)!r}",
                        where,
                    )
                )
                return
            target = m.group(1)
        declared = val.get("type")
        if (
            target is not None
            and type(declared) is str
            and "/" not in declared
            and declared != target
        ):
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"Reference.type is {declared} but the reference points to a {target}",
                    (f"{path}.type",),
                )
            )
        if target is not None and el.targets is not None and target not in el.targets:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{el.owner} cannot refer to a {target}; "
                    f"allowed: {', '.join(sorted(el.targets))}",
                    where,
                )
            )


def _attachment_content(att: dict[str, Any], path: str, issues: list[Issue]) -> None:
    # size and hash describe the decoded data, checkable only when it is inline; a mismatch is
    # content that disagrees with its metadata (422), not malformed FHIR
    data = att.get("data")
    if type(data) is not str or ("size" not in att and "hash" not in att):
        return
    try:
        raw = decode_base64(data)
    except ValueError:
        return  # already reported by the base64Binary checker
    for name, text in content_mismatches(att, len(raw), sha1_digest(raw), "data"):
        issues.append(Issue("error", "business-rule", text, (f"{path}.{name}",)))


def _element_id(eid: str, path: str, issues: list[Issue], ctx: _Ctx) -> None:
    """R4 Element.id: "unique id for the element within a resource" (a contained resource is
    a resource of its own)."""
    seen = ctx.element_ids
    if seen is None:
        seen = ctx.element_ids = {}
    key = (ctx.current, eid)
    first = seen.get(key)
    if first is None:
        seen[key] = path
        return
    issues.append(
        Issue(
            "error",
            "duplicate",
            f"Element id {eid[:64]!r} is already used by {first}: an element id is unique "
            "within its resource",
            (f"{path}.id",),
        )
    )


def _check_invariants(
    invariants: Any, value: dict[str, Any], path: str, issues: list[Issue], ctx: _Ctx
) -> None:
    for inv in invariants:
        if inv.child:
            _check_child(inv, value, path, issues, ctx)
            continue
        if not _holds(inv, value, ctx):
            issues.append(
                Issue(
                    inv.severity, "invariant", f"Constraint {inv.key} failed: {inv.human}", (path,)
                )
            )


def _check_child(inv: Any, obj: dict[str, Any], path: str, issues: list[Issue], ctx: _Ctx) -> None:
    """A constraint on a primitive element, on each of its values (well-typed ones only)."""
    values = obj.get(inv.child)
    if values is None:
        return
    items = values if type(values) is list else [values]
    for i, value in enumerate(items):
        if type(value) is not str or _holds(inv, value, ctx):
            continue
        where = f"{path}.{inv.child}" + (f"[{i}]" if type(values) is list else "")
        issues.append(
            Issue(inv.severity, "invariant", f"Constraint {inv.key} failed: {inv.human}", (where,))
        )


def _holds(inv: Any, value: Any, ctx: _Ctx) -> bool:
    return bool(
        inv.test(value) if inv.test is not None else inv.expr.holds(value, ctx.res, ctx.root)
    )
