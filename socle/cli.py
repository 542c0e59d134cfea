"""The `socle` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Socle, the regional e-health platform."
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="SOCLE_DATA_DIR", help="Where the embedded database lives."),
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDir = None,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="SOCLE_WORKERS", help="Worker processes (default: one per core, max 4)."
        ),
    ] = None,
) -> None:
    """Run the HTTP server (FHIR base at /fhir)."""
    import os

    from .server import run

    run(host=host, port=port, data_dir=data_dir, workers=workers or min(os.cpu_count() or 1, 4))


@app.command()
def generate(
    patients: Annotated[int, typer.Option(help="How many patients.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same region.")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/region"),
) -> None:
    """Generate a synthetic French region as FHIR NDJSON and transaction Bundles."""
    from .region.cli import generate_command

    generate_command(patients=patients, seed=seed, out=out)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDir = None,
    patients: Annotated[int, typer.Option(help="Patients of the synthetic region.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic region.")] = 1,
) -> None:
    """Run Socle with a synthetic region loaded through the FHIR API (idempotent)."""
    from .region.demo import demo_command

    demo_command(host, port, data_dir or Path(".socle-data"), patients, seed)


@app.command("import")
def import_(
    inputs: Annotated[
        list[str], typer.Argument(help="NDJSON files (.ndjson, .ndjson.gz), folders, URLs.")
    ],
    data_dir: DataDir = None,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first bad line (its chunk is not committed).")
    ] = False,
    chunk: Annotated[int, typer.Option(help="Lines per chunk (one transaction each).")] = 2000,
    processes: Annotated[
        int | None, typer.Option(help="Worker processes checking lines (default: one per core).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the bad lines (NDJSON: line, OperationOutcome).")
    ] = None,
) -> None:
    """Import FHIR NDJSON: validated and indexed as REST writes, stored at their ids,
    resumable (re-run the same command after a crash)."""
    from .bulk.cli import import_command
    from .config import Settings

    status = import_command(Settings.from_env(data_dir), inputs, strict, chunk, processes, report)
    raise typer.Exit(status)


def _settings_for(data_dir: Path | None) -> Any:
    from .config import Settings

    return Settings.as_served(data_dir)


@app.command()
def token(
    principal: Annotated[
        str,
        typer.Argument(
            help="operator, admin, ars, practitioner:<RPPS>, referent:<RPPS>, patient:<id>, "
            "representative:<RelatedPerson id>:<patient id>, system:<client id>:<Organization id>"
        ),
    ],
    scope: Annotated[str | None, typer.Option(help="Scopes (default: the role's).")] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds of validity.")] = 3600,
    data_dir: DataDir = None,
) -> None:
    """Print an access token for a demo principal (demo data dirs only), with the claims of a
    real login; refuses a principal the store does not know."""
    import psycopg

    from .auth.demo_tokens import UnknownPrincipal, directory_claims, mint
    from .database import resolve_url
    from .region.demo import MARKER

    settings = _settings_for(data_dir)
    if not (settings.data_dir / MARKER).exists():
        typer.echo(
            f"{settings.data_dir} is not a demo data dir: `socle token` only serves demos. "
            "Use the authorisation server (docs/security.md).",
            err=True,
        )
        raise typer.Exit(2)
    try:
        with psycopg.connect(resolve_url(settings), autocommit=True) as conn:
            claims = directory_claims(conn, settings, principal)
        typer.echo(mint(settings, principal, scope=scope, lifetime=lifetime, **claims))
    except UnknownPrincipal as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None,
    seal_first: Annotated[
        bool, typer.Option("--seal/--no-seal", help="Chain pending events before verifying.")
    ] = True,
) -> None:
    """Verify the audit hash chain: every altered, removed, inserted or reordered record."""
    import asyncio

    import psycopg

    from .auth.audit_store import AnchorMismatch, seal, verify
    from .database import resolve_url

    settings = _settings_for(data_dir)

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(
            resolve_url(settings), autocommit=True
        ) as conn:
            if seal_first:
                try:
                    await seal(conn, settings.data_dir)
                except AnchorMismatch as exc:  # nothing sealed; the problems are listed below
                    typer.echo(f"ALARM: {exc}; pending events left unsealed")
            return await verify(conn, settings.data_dir)

    result = asyncio.run(run())
    typer.echo(
        f"{result.records} records chained (head seq {result.head[0]}), "
        f"{result.unsealed} not yet chained"
    )
    for problem in result.problems:
        typer.echo(f"PROBLEM: {problem}")
    if not result.ok:
        typer.echo(f"The audit trail has been tampered with: {len(result.problems)} problem(s)")
        raise typer.Exit(1)
    typer.echo("The audit trail is intact.")


content_app = typer.Typer(no_args_is_help=True, help="The document content store.")
app.add_typer(content_app, name="content")


@content_app.command("rotate-key")
def content_rotate_key(data_dir: DataDir = None) -> None:
    """Make a new master key the active one (older keys still unwrap their objects)."""
    from .config import Settings
    from .fhir.storage.content import rotate_master_key

    typer.echo(f"Active master key: {rotate_master_key(Settings.from_env(data_dir))}")


@content_app.command("rewrap")
def content_rewrap(data_dir: DataDir = None) -> None:
    """Re-wrap every object's data key with the active master key (after a rotation)."""
    import asyncio

    from .config import Settings
    from .fhir.storage.content import content_store, rewrap_all

    seen, changed = asyncio.run(rewrap_all(content_store(Settings.from_env(data_dir))))
    typer.echo(f"{seen} objects, {changed} rewrapped with the active master key")


@content_app.command("retire-key")
def content_retire_key(key_id: str, data_dir: DataDir = None) -> None:
    """Remove a master key: every object is first re-wrapped with the active key, so none
    still needs the retired one."""
    import asyncio

    from .config import Settings
    from .fhir.storage.content import content_store, retire_master_key, rewrap_all

    settings = Settings.from_env(data_dir)
    seen, changed = asyncio.run(rewrap_all(content_store(settings)))
    retire_master_key(settings, key_id)
    typer.echo(f"{seen} objects checked, {changed} rewrapped; master key {key_id} retired")


def _connect(data_dir: Path | None):  # type: ignore[no-untyped-def]
    """A connection to the (migrated) database of this data dir or of DATABASE_URL."""
    import psycopg

    from .config import Settings
    from .database import prepare, resolve_url

    settings = Settings.from_env(data_dir)
    url = resolve_url(settings)
    prepare(url)
    return settings, psycopg.connect(url, autocommit=True)


terminology_app = typer.Typer(no_args_is_help=True, help="The terminology service.")
app.add_typer(terminology_app, name="terminology")


@terminology_app.command("load")
def terminology_load(
    file: Annotated[Path, typer.Argument(help="A FHIR package .tgz, a JSON Bundle or NDJSON.")],
    data_dir: DataDir = None,
) -> None:
    """Load the CodeSystems, ValueSets and ConceptMaps of a file (again: nothing changes)."""
    import asyncio
    import json

    import psycopg

    from .config import Settings
    from .database import prepare, resolve_url
    from .fhir.terminology.files import load_file

    url = resolve_url(Settings.from_env(data_dir))

    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await load_file(conn, file)

    try:
        prepare(url)
        report = asyncio.run(run())
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report))


client_app = typer.Typer(no_args_is_help=True, help="OAuth clients of the authorisation server.")
app.add_typer(client_app, name="client")


@client_app.command("add")
def client_add(
    client_id: Annotated[str, typer.Option("--id", help="The client id.")],
    public: Annotated[
        bool,
        typer.Option(
            "--public/--confidential",
            help="Public (browser/mobile app, PKCE) or confidential (private_key_jwt).",
        ),
    ] = True,
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Redirect URI (repeatable).")
    ] = None,
    scope: Annotated[str, typer.Option("--scope", help="Allowed scopes, space-separated.")] = "",
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="Public JWKS of a confidential client.")
    ] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", help="client_credentials role: system or operator."),
    ] = None,
    organization: Annotated[
        str | None, typer.Option("--organization", help="Organization id of a system client.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name shown to users.")] = None,
    replace: Annotated[bool, typer.Option(help="Replace an existing client.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register an OAuth client."""
    import json

    from .auth.server import ClientError, register_client

    jwks = json.loads(jwks_file.read_text(encoding="utf-8")) if jwks_file else None
    _, conn = _connect(data_dir)
    with conn:
        try:
            register_client(
                conn,
                client_id,
                public=public,
                redirect_uris=redirect_uri or [],
                scopes=scope,
                jwks=jwks,
                role=role,
                organization=organization,
                name=name,
                replace=replace,
            )
        except ClientError as exc:
            raise typer.BadParameter(str(exc)) from None
    print(f"Client {client_id} registered.")


@client_app.command("list")
def client_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List the registered OAuth clients (no secret exists to show: public keys only)."""
    import json

    from .auth.server.clients import list_clients

    _, conn = _connect(data_dir)
    with conn:
        clients = list_clients(conn)
    if as_json:
        for c in clients:
            print(
                json.dumps(
                    {
                        "client_id": c.client_id,
                        "type": c.client_type,
                        "auth_method": c.auth_method,
                        "role": c.role,
                        "organization": c.organization,
                        "redirect_uris": list(c.redirect_uris),
                        "scopes": c.scopes,
                        "name": c.name,
                    },
                    ensure_ascii=False,
                )
            )
        return
    if not clients:
        print("No client registered.")
        return
    print(f"{'CLIENT ID':<28} {'TYPE':<13} {'ROLE':<9} {'ORGANIZATION / REDIRECT URIS':<50} SCOPES")
    for c in clients:
        where = c.organization or " ".join(c.redirect_uris) or "-"
        print(f"{c.client_id:<28} {c.client_type:<13} {c.role or '-':<9} {where:<50} {c.scopes}")


@client_app.command("remove")
def client_remove(
    client_id: Annotated[str, typer.Argument(help="The client id.")],
    data_dir: DataDir = None,
) -> None:
    """Remove an OAuth client: its pending requests and codes go, its refresh tokens are revoked
    (access tokens already issued run until they expire)."""
    from .auth.server.clients import remove_client

    _, conn = _connect(data_dir)
    with conn:
        if not remove_client(conn, client_id):
            typer.echo(f"No client {client_id!r}: see `socle client list`.", err=True)
            raise typer.Exit(2)
    print(f"Client {client_id} removed.")


@app.command("patient-account")
def patient_account(
    patient_id: Annotated[str, typer.Argument(help="The Patient id.")],
    login: Annotated[
        str | None, typer.Option(help="Login (default: the patient id; the INS also works).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create or reset a patient's account; prints the otpauth:// URI of the TOTP secret."""
    from .auth.server import create_patient_account
    from .auth.server.totp import provisioning_uri

    password = typer.prompt("Mot de passe", hide_input=True, confirmation_prompt=True)
    settings, conn = _connect(data_dir)
    with conn:
        try:
            secret = create_patient_account(
                conn, patient_id, password, login=login, settings=settings
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    print("Ajoutez ce compte dans une application d'authentification (TOTP) :")
    print(provisioning_uri(secret, login or patient_id))


operator_app = typer.Typer(
    no_args_is_help=True, help="Staff accounts of the platform's operators (the GRADeS)."
)
app.add_typer(operator_app, name="operator")


@operator_app.command("add")
def operator_add(
    login: Annotated[str, typer.Argument(help="The login (a-z, 0-9, '.', '_', '-').")],
    name: Annotated[str, typer.Option("--name", help="The name shown on the pages.")],
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the password from this file (first line) instead of a prompt."),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="May manage the staff accounts (their page).")
    ] = False,
    role: Annotated[
        str,
        typer.Option(
            help="operator (the platform's operation) or ars-analyst (the observatory's pages)."
        ),
    ] = "operator",
    data_dir: DataDir = None,
) -> None:
    """Create a staff account (password + TOTP); prints the TOTP secret's otpauth:// URI once."""
    from .auth.server.operators import create_operator
    from .auth.server.totp import provisioning_uri

    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    else:
        password = typer.prompt("Mot de passe", hide_input=True, confirmation_prompt=True)
    settings, conn = _connect(data_dir)
    with conn:
        try:
            secret = create_operator(conn, login, name, password, settings, admin=admin, role=role)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    print("Ajoutez ce compte dans une application d'authentification (TOTP) :")
    print(provisioning_uri(secret, f"exploitation:{login}"))
    print(f"Clé (saisie manuelle) : {secret}")


@operator_app.command("list")
def operator_list(data_dir: DataDir = None) -> None:
    """The staff accounts."""
    from .auth.server.operators import list_operators

    _, conn = _connect(data_dir)
    with conn:
        found = list_operators(conn)
    if not found:
        print("No operator account: add one with `socle operator add`.")
        return
    print(f"{'LOGIN':<24} {'ROLE':<12} {'LOCKED':<7} {'CREATED':<26} NAME")
    for o in found:
        locked = "yes" if o.locked else "no"
        role = "admin" if o.admin else o.role
        created = o.created_at.isoformat(timespec="seconds")
        print(f"{o.login:<24} {role:<12} {locked:<7} {created:<26} {o.display_name}")


@operator_app.command("remove")
def operator_remove(
    login: Annotated[str, typer.Argument(help="The login.")],
    data_dir: DataDir = None,
) -> None:
    """Remove a staff account (never the last administrator); its open sessions end at once."""
    from .auth.server.operators import remove_staff

    _staff_outcome(login, _on_operator(data_dir, lambda conn: remove_staff(conn, login)))
    print(f"Operator {login} removed.")


@operator_app.command("admin")
def operator_admin(
    login: Annotated[str, typer.Argument(help="The login.")],
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Take the right away instead of granting it.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Grant (or --revoke) the right to manage the staff accounts (never the last one's)."""
    from .auth.server.operators import set_admin

    _staff_outcome(login, _on_operator(data_dir, lambda conn: set_admin(conn, login, not revoke)))
    print(f"Operator {login}: {'no longer an' if revoke else 'now an'} administrator.")


def _staff_outcome(login: str, outcome: str) -> None:
    """Exit 2 with the reason when a staff account's change did not happen."""
    if outcome == "unknown":
        typer.echo(f"No operator {login!r}: see `socle operator list`.", err=True)
        raise typer.Exit(2)
    if outcome == "last-admin":
        typer.echo(f"{login!r} is the last administrator: grant another one first.", err=True)
        raise typer.Exit(2)
    if outcome == "not-operator":
        typer.echo(f"{login!r} is an ARS analyst: only an operator administers.", err=True)
        raise typer.Exit(2)


def _on_operator(data_dir: Path | None, work: Any) -> Any:
    """Run ``work(conn)`` (a coroutine function of the staff accounts' async API)."""
    from .workers.cli import on_database

    return on_database(data_dir, work)


@operator_app.command("reset-password")
def operator_reset_password(
    login: Annotated[str, typer.Argument(help="The login.")],
    data_dir: DataDir = None,
) -> None:
    """Give a staff account a one-time password (printed once), to change at its next login;
    its open sessions end."""
    from .auth.server.operators import reset_password

    password = _on_operator(data_dir, lambda conn: reset_password(conn, login))
    if password is None:
        typer.echo(f"No operator {login!r}: see `socle operator list`.", err=True)
        raise typer.Exit(2)
    print(f"Mot de passe à usage unique de {login} (à changer à la prochaine connexion) :")
    print(password)


@operator_app.command("reset-totp")
def operator_reset_totp(
    login: Annotated[str, typer.Argument(help="The login.")],
    data_dir: DataDir = None,
) -> None:
    """Forget a staff account's TOTP secret: its next login enrols a new one (a QR code and a
    first code); its open sessions end."""
    from .auth.server.operators import reset_totp

    if not _on_operator(data_dir, lambda conn: reset_totp(conn, login)):
        typer.echo(f"No operator {login!r}: see `socle operator list`.", err=True)
        raise typer.Exit(2)
    print(f"Operator {login}: TOTP reset, a new one is enrolled at the next login.")


@app.command("activation-code")
def activation_code(
    patient_id: Annotated[
        str | None, typer.Argument(help="The Patient id (not needed with --related-person).")
    ] = None,
    related_person: Annotated[
        str | None,
        typer.Option(
            "--related-person",
            help="A RelatedPerson id: the code of the patient's legal representative "
            "(a parent, a guardian), for his own account.",
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Days before the code expires.")] = 30,
    issued_by: Annotated[str, typer.Option(help="Who hands it over (recorded).")] = "operator",
    data_dir: DataDir = None,
) -> None:
    """Issue a patient's single-use activation code for their first login at /activation; or,
    with --related-person, his legal representative's (who gives the patient's INS and birth
    date at /activation and gets a login of his own)."""
    from .portal.activation_codes import issue

    if patient_id is None and related_person is None:
        raise typer.BadParameter("give the Patient id, or --related-person ID")
    _, conn = _connect(data_dir)
    with conn:
        patient = (
            patient_id if related_person is None else _represented(conn, related_person, patient_id)
        )
        code, expires = issue(conn, patient or "", issued_by, days, related_person=related_person)
    from .web.times import paris

    print(f"Code d'activation : {code} (valable jusqu'au {paris(expires)}, heure de Paris)")


def _represented(conn: Any, related_person: str, patient_id: str | None) -> str:
    """The patient ``related_person`` may act for (active, a legal representative); exits with
    the reason otherwise."""
    from .auth.representation import represented_patient

    related_person = related_person.removeprefix("RelatedPerson/")
    row = conn.execute(
        "SELECT content FROM resource WHERE rtype = 'RelatedPerson' AND id = %s AND NOT deleted",
        (related_person,),
    ).fetchone()
    represented = represented_patient(row[0]) if row else None  # jsonb: a dict
    problem = None
    if row is None:
        problem = f"no RelatedPerson/{related_person} in the store"
    elif represented is None:
        problem = (
            f"RelatedPerson/{related_person} cannot act for a patient: it must be active and a "
            "legal representative (a parent, a guardian, a power of attorney)"
        )
    elif patient_id is not None and patient_id.removeprefix("Patient/") != represented:
        problem = f"RelatedPerson/{related_person} represents Patient/{represented}, not this one"
    if problem is not None or represented is None:
        typer.echo(problem, err=True)
        raise typer.Exit(1)
    return represented


mailbox_app = typer.Typer(
    no_args_is_help=True, help="Secure-messaging mailboxes (MSSanté kinds and citizen ones)."
)
app.add_typer(mailbox_app, name="mailbox")


def _password_from(password_file: Path | None, ask: bool) -> str | None:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines and lines[0] else None
    if ask:
        return str(typer.prompt("Mot de passe", hide_input=True, confirmation_prompt=True))
    return None


@mailbox_app.command("list")
def mailbox_list(
    owner: Annotated[str | None, typer.Option(help="Only this owner's (a reference).")] = None,
    data_dir: DataDir = None,
) -> None:
    """The mailboxes: address, kind, owner, whether a password is set, space used."""
    from .messaging.mailboxes import listed

    _, conn = _connect(data_dir)
    with conn:
        found = listed(conn, owner)
    if not found:
        print("No mailbox" + (f" of {owner}" if owner else "") + ".")
        return
    print(f"{'ADDRESS':<48} {'KIND':<5} {'PASSWORD':<9} {'FILING':<7} {'USED':>12} OWNER")
    for m in found:
        password = "yes" if m.password_hash else "no"
        filing = m.filing_rule.mode
        print(f"{m.address:<48} {m.kind:<5} {password:<9} {filing:<7} {m.used_bytes:>12} {m.owner}")


@mailbox_app.command("add")
def mailbox_add(
    address: Annotated[str, typer.Argument(help="The mail address.")],
    kind: Annotated[str, typer.Option(help="PER, ORG, APP (TRE_R257) or PAT.")],
    owner: Annotated[str, typer.Option(help="Its owner: Practitioner/…, Organization/…")],
    identifier: Annotated[
        str | None, typer.Option(help="RPPS (PER), FINESS (ORG/APP) or INS (PAT).")
    ] = None,
    display: Annotated[str | None, typer.Option(help="The name shown.")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="An SMTP password, first line of this file.")
    ] = None,
    with_password: Annotated[
        bool, typer.Option("--with-password", help="Ask for an SMTP password.")
    ] = False,
    quota_bytes: Annotated[
        int | None, typer.Option(help="Its quota (default: the server's).")
    ] = None,
    unlisted: Annotated[bool, typer.Option(help="On the red list (listeRouge).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create or update a mailbox (a token of its owner sends from it; a password serves
    clients that only know AUTH PLAIN/LOGIN)."""
    from .messaging.mailboxes import create

    password = _password_from(password_file, with_password)
    _, conn = _connect(data_dir)
    with conn:
        try:
            create(
                conn,
                address,
                kind,
                owner,
                identifier=identifier,
                display=display,
                password=password,
                quota_bytes=quota_bytes,
                unlisted=unlisted,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    print(f"Mailbox {address.lower()} ready.")


@mailbox_app.command("password")
def mailbox_password(
    address: Annotated[str, typer.Argument(help="The mail address.")],
    password_file: Annotated[
        Path | None, typer.Option(help="The new password, first line of this file.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the password.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Change a mailbox's SMTP password; sessions opened with the old one send nothing more."""
    from .messaging.mailboxes import set_password

    password = None if clear else _password_from(password_file, ask=True)
    _, conn = _connect(data_dir)
    with conn:
        if not set_password(conn, address, password):
            typer.echo(f"No mailbox {address!r}: see `socle mailbox list`.", err=True)
            raise typer.Exit(2)
    print(f"Password of {address.lower()} " + ("removed." if password is None else "changed."))


@mailbox_app.command("certificate")
def mailbox_certificate(
    address: Annotated[str, typer.Argument(help="The mail address.")],
    file: Annotated[
        Path | None, typer.Option("--file", help="The client certificate (PEM) to pin it to.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Unpin it.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Pin a mailbox to a client certificate (mutual TLS: the client then AUTH EXTERNAL as it,
    with SOCLE_SMTP_CLIENT_CA_FILE set); sessions of another certificate send nothing more."""
    from .messaging.mailboxes import pin_certificate
    from .messaging.tls import pem_fingerprint

    if (file is None) == (not clear):
        raise typer.BadParameter("give --file CERT.pem or --clear")
    try:
        sha256 = pem_fingerprint(file.read_bytes()) if file is not None else None
    except ValueError as exc:
        raise typer.BadParameter(f"not a PEM certificate: {exc}") from None
    _, conn = _connect(data_dir)
    with conn:
        if not pin_certificate(conn, address, sha256):
            typer.echo(f"No mailbox {address!r}: see `socle mailbox list`.", err=True)
            raise typer.Exit(2)
    print(f"{address.lower()} " + (f"pinned to {sha256}." if sha256 else "unpinned."))


@mailbox_app.command("filing")
def mailbox_filing(
    address: Annotated[str, typer.Argument(help="The mail address.")],
    mode: Annotated[
        str | None,
        typer.Option(help="always, asked (when a message asks its integration status), never."),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only documents of this type (XDS typeCode); repeatable."),
    ] = None,
    senders: Annotated[
        list[str] | None,
        typer.Option("--sender", help="Only from this address or @domain; repeatable."),
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to its kind's rule.")] = False,
    data_dir: DataDir = None,
) -> None:
    """When a mailbox files the XDM documents it receives to the shared record (by default: an
    application mailbox always, a person or an organisation when asked, a citizen never)."""
    from .messaging.mailboxes import FilingRule, set_filing

    if (mode is None) == (not default):
        raise typer.BadParameter("give --mode always|asked|never, or --default")
    rule = None if default else FilingRule(str(mode), tuple(types or ()), tuple(senders or ()))
    _, conn = _connect(data_dir)
    with conn:
        try:
            done = set_filing(conn, address, rule)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if not done:
            typer.echo(f"No mailbox {address!r}: see `socle mailbox list`.", err=True)
            raise typer.Exit(2)
    print(f"{address.lower()} files: " + (rule.mode if rule else "as its kind does") + ".")


@mailbox_app.command("remove")
def mailbox_remove(
    address: Annotated[str, typer.Argument(help="The mail address.")],
    data_dir: DataDir = None,
) -> None:
    """Close a mailbox: no more mail to or from it; its messages stay in the record."""
    from .messaging.mailboxes import remove

    _, conn = _connect(data_dir)
    with conn:
        if not remove(conn, address):
            typer.echo(f"No mailbox {address!r}: see `socle mailbox list`.", err=True)
            raise typer.Exit(2)
    print(f"Mailbox {address.lower()} closed.")


from .workers.cli import jobs_app  # noqa: E402 - beside the other command groups
from .workers.cli import worker as worker_command  # noqa: E402

app.command("worker")(worker_command)
app.add_typer(jobs_app, name="jobs")


if __name__ == "__main__":
    app()
