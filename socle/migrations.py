"""Schema migrations, applied in order at start-up under a PostgreSQL advisory lock.

Each migration runs in its own transaction and is recorded in `socle_schema`; a process that finds
a migration already recorded skips it, so concurrent start-ups and restarts are safe.
"""

from __future__ import annotations

import psycopg

# Arbitrary constant: the advisory lock that serialises schema changes across processes.
_MIGRATION_LOCK = 0x50C1E

ENGINE_V1 = """
-- rid: a compact surrogate key shared by the current row, its history and its index rows.
-- Allocated in blocks of 100 by each process (see socle.fhir.storage.rids).
CREATE SEQUENCE resource_rid_seq INCREMENT BY 100;

-- Current version of every resource (deleted ones keep a tombstone row with content NULL).
CREATE TABLE resource (
    rid           bigint PRIMARY KEY,
    rtype         text NOT NULL,
    id            text NOT NULL,
    version       integer NOT NULL,
    last_updated  timestamptz NOT NULL,
    deleted       boolean NOT NULL DEFAULT false,
    -- Patient compartment owner (Patient id): the future distribution key and the policy's anchor.
    compartment   text,
    content       jsonb,
    UNIQUE (rtype, id)
);
CREATE INDEX resource_type_updated ON resource (rtype, last_updated);
CREATE INDEX resource_updated ON resource (last_updated);
CREATE INDEX resource_compartment ON resource (compartment) WHERE compartment IS NOT NULL;

-- Every earlier version; the current one lives in `resource` only (creates write one row).
CREATE TABLE resource_history (
    rid           bigint NOT NULL,
    rtype         text NOT NULL,
    id            text NOT NULL,
    version       integer NOT NULL,
    last_updated  timestamptz NOT NULL,
    deleted       boolean NOT NULL,
    content       jsonb,
    PRIMARY KEY (rid, version)
);
CREATE INDEX resource_history_type_updated ON resource_history (rtype, last_updated);
CREATE INDEX resource_history_updated ON resource_history (last_updated);

-- Search index tables: one per kind of value, rows rebuilt on each write of the resource.
CREATE TABLE idx_string (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    norm text COLLATE "C" NOT NULL,  -- accents folded, case folded: prefix search with LIKE
    exact text NOT NULL
);
CREATE INDEX idx_string_search ON idx_string (rtype, param, norm, rid);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_token (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    system text, code text, display text  -- display: folded text for :text
);
CREATE INDEX idx_token_search ON idx_token (rtype, param, code, system, rid);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_date (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    low timestamptz NOT NULL, high timestamptz NOT NULL  -- [low, high) from the value's precision
);
CREATE INDEX idx_date_search ON idx_date (rtype, param, low, high, rid);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_number (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    low numeric NOT NULL, high numeric NOT NULL
);
CREATE INDEX idx_number_search ON idx_number (rtype, param, low, high, rid);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    system text, code text, unit text, low numeric NOT NULL, high numeric NOT NULL
);
CREATE INDEX idx_quantity_search ON idx_quantity (rtype, param, low, high, rid);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_reference (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    target_type text, target_id text, target_url text
);
CREATE INDEX idx_reference_search ON idx_reference (rtype, param, target_id, target_type, rid);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_uri (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL,
    uri text COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_search ON idx_uri (rtype, param, uri, rid);
CREATE INDEX idx_uri_rid ON idx_uri (rid);
"""

SEARCH_REINDEX_V2 = """
-- One row per run-time SearchParameter whose index must be built for the resources that existed
-- before it: a checkpointed walk by rid, resumable after a restart.
CREATE TABLE search_reindex (
    url         text PRIMARY KEY,
    not_before  timestamptz NOT NULL,  -- grace delay: every worker indexes new writes first
    last_rid    bigint NOT NULL DEFAULT 0,
    done        boolean NOT NULL DEFAULT false,
    updated     timestamptz NOT NULL DEFAULT now()
);
"""

COMPOSITE_V3 = """
-- Composite search parameters (e.g. Observation component-code-value-quantity): one row per
-- component value, with `grp` the ordinal of the element it came from, so a match needs all its
-- components from the same element (the same Observation.component). Typed slots per kind.
CREATE TABLE idx_composite (
    rid bigint NOT NULL, rtype text NOT NULL, param text NOT NULL, grp integer NOT NULL,
    comp smallint NOT NULL,
    system text, code text, unit text, norm text COLLATE "C", exact text,
    low numeric, high numeric, dlow timestamptz, dhigh timestamptz,
    target_type text, target_id text, target_url text
);
CREATE INDEX idx_composite_search ON idx_composite (rtype, param, comp, code, rid, grp);
CREATE INDEX idx_composite_rid ON idx_composite (rid);
"""

SECURITY_V4 = """
-- The organisation a resource belongs to (set from the writing client's organisation):
-- system clients see their own organisation's data.
ALTER TABLE resource ADD COLUMN owner text;
CREATE INDEX resource_owner ON resource (owner, rtype) WHERE owner IS NOT NULL;

-- The audit trail: AuditEvents are FHIR resources (searchable, in the patient's compartment for
-- the access history); this table chains them. A request inserts its events with seq NULL in
-- its own transaction; the sealer gives them their place in the chain in commit order
-- (seq, prev_hash, hash), so no global lock is taken on the request path.
CREATE TABLE audit_log (
    audit_id   text PRIMARY KEY,  -- AuditEvent.id
    seq        bigint UNIQUE,
    prev_hash  text,
    hash       text
);
CREATE INDEX audit_log_unsealed ON audit_log (audit_id) WHERE seq IS NULL;
CREATE TABLE audit_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head VALUES (true, -1, repeat('0', 64));

-- Emergency (break-glass) access grants: a professional, a patient, a reason, an expiry.
CREATE TABLE break_glass (
    principal  text NOT NULL,
    patient    text NOT NULL,
    reason     text NOT NULL,
    granted_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX break_glass_principal ON break_glass (principal, expires_at);
"""

AUTH_SERVER_V5 = """
-- The built-in authorisation server (socle/auth/server). Secrets are never stored in clear:
-- codes, refresh tokens and passwords are hashed, TOTP secrets are encrypted (AES-GCM, key in
-- the data dir).
CREATE TABLE auth_client (
    client_id     text PRIMARY KEY,
    client_type   text NOT NULL CHECK (client_type IN ('public', 'confidential')),
    auth_method   text NOT NULL CHECK (auth_method IN ('none', 'private_key_jwt')),
    redirect_uris text[] NOT NULL DEFAULT '{}',
    scopes        text NOT NULL,              -- allowed scopes, space-separated
    jwks          jsonb,                      -- public keys of a private_key_jwt client
    role          text CHECK (role IN ('system', 'operator')),  -- client_credentials tokens
    organization  text,                       -- Organization/<id> of a system client
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((client_type = 'public') = (auth_method = 'none')),
    CHECK (auth_method <> 'private_key_jwt' OR jwks IS NOT NULL)
);

-- A pending authorisation request, from /auth/authorize to the code: its id lives in a cookie.
CREATE TABLE auth_request (
    id_hash     bytea PRIMARY KEY,
    client_id   text NOT NULL REFERENCES auth_client ON DELETE CASCADE,
    params      jsonb NOT NULL,
    subject     jsonb,                        -- who authenticated, once they have
    expires_at  timestamptz NOT NULL
);

CREATE TABLE auth_code (
    code_hash      bytea PRIMARY KEY,
    client_id      text NOT NULL,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,             -- PKCE S256
    scope          text NOT NULL,
    subject        jsonb NOT NULL,            -- includes the launch patient
    nonce          text,
    family_id      uuid NOT NULL,             -- refresh tokens issued from it (revoked on reuse)
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);

CREATE TABLE auth_refresh_token (
    token_hash  bytea PRIMARY KEY,
    family_id   uuid NOT NULL,
    client_id   text NOT NULL,
    scope       text NOT NULL,
    subject     jsonb NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,         -- the family's: rotation does not extend it
    used_at     timestamptz,                  -- rotated: presenting it again is a reuse
    revoked_at  timestamptz
);
CREATE INDEX auth_refresh_token_family ON auth_refresh_token (family_id);

-- Revoked access tokens (RFC 7009), until they would have expired anyway.
CREATE TABLE auth_revoked_jti (
    jti         text PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);

-- jti of client assertions already used (RFC 7523 replay protection).
CREATE TABLE auth_assertion_jti (
    client_id   text NOT NULL,
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE patient_account (
    patient_id       text PRIMARY KEY,
    login            text NOT NULL UNIQUE,
    password_hash    text NOT NULL,
    totp_secret_enc  bytea NOT NULL,
    totp_last_step   bigint NOT NULL DEFAULT 0,  -- a TOTP code is accepted once
    failed_attempts  integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Per-IP rate limiting of the login and token endpoints (sliding window).
CREATE TABLE auth_rate_event (
    bucket  text NOT NULL,
    ip      text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_rate_event_lookup ON auth_rate_event (bucket, ip, at);

-- The Pro Santé Connect stand-in's own authorisation codes.
CREATE TABLE psc_standin_code (
    code_hash       bytea PRIMARY KEY,
    client_id       text NOT NULL,
    redirect_uri    text NOT NULL,
    national_id     text NOT NULL,
    nonce           text,
    code_challenge  text,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
"""

AUDIT_LEAN_V146 = """
-- The lean audit trail: audit_log holds the AuditEvents themselves, one append-only
-- row per request (no resource row, no index rows per event), written in batches. Columns
-- serve the access history's searches; `event` is the canonical JSON the hash chain covers.
DROP INDEX audit_log_unsealed;
ALTER TABLE audit_log
    ADD COLUMN ord      bigint,          -- append order: the sealer's queue, the paging key
    ADD COLUMN recorded timestamptz,
    ADD COLUMN patients text[] NOT NULL DEFAULT '{}',  -- every patient the request disclosed
    ADD COLUMN agents   text[] NOT NULL DEFAULT '{}',  -- who.reference, system|value
    ADD COLUMN action   text,
    ADD COLUMN outcome  text,
    ADD COLUMN subtype  text,
    ADD COLUMN event    text;            -- NULL only if the event was deleted before this
CREATE SEQUENCE audit_log_ord_seq OWNED BY audit_log.ord;

-- Events recorded so far move in from the resource table; their chain is unchanged (the hash
-- never covered meta, and verification re-canonicalises the JSON).
WITH moved AS (
    SELECT l.audit_id, r.content,
           row_number() OVER (ORDER BY l.seq NULLS LAST, r.rid) AS n
    FROM audit_log l
    LEFT JOIN resource r ON r.rtype = 'AuditEvent' AND r.id = l.audit_id
)
UPDATE audit_log l SET
    ord = m.n,
    recorded = COALESCE((m.content->>'recorded')::timestamptz, now()),
    action = m.content->>'action',
    outcome = m.content->>'outcome',
    subtype = m.content#>>'{subtype,0,code}',
    patients = ARRAY(
        SELECT substr(e#>>'{what,reference}', 9)
        FROM jsonb_array_elements(COALESCE(m.content->'entity', '[]')) e
        WHERE e#>>'{role,code}' = '1' AND e#>>'{what,reference}' LIKE 'Patient/%'),
    agents = ARRAY(
        SELECT v FROM jsonb_array_elements(COALESCE(m.content->'agent', '[]')) a,
        LATERAL (VALUES (a#>>'{who,reference}'),
                        ((a#>>'{who,identifier,system}') || '|' || (a#>>'{who,identifier,value}'))
                ) x(v)
        WHERE v IS NOT NULL),
    event = (m.content - 'meta')::text
FROM moved m
WHERE l.audit_id = m.audit_id;
SELECT setval('audit_log_ord_seq', COALESCE((SELECT max(ord) FROM audit_log), 0) + 1, false);
ALTER TABLE audit_log
    ALTER COLUMN ord SET DEFAULT nextval('audit_log_ord_seq'),
    ALTER COLUMN ord SET NOT NULL,
    ALTER COLUMN recorded SET NOT NULL;
DELETE FROM idx_string WHERE rtype = 'AuditEvent';
DELETE FROM idx_token WHERE rtype = 'AuditEvent';
DELETE FROM idx_date WHERE rtype = 'AuditEvent';
DELETE FROM idx_number WHERE rtype = 'AuditEvent';
DELETE FROM idx_quantity WHERE rtype = 'AuditEvent';
DELETE FROM idx_reference WHERE rtype = 'AuditEvent';
DELETE FROM idx_uri WHERE rtype = 'AuditEvent';
DELETE FROM idx_composite WHERE rtype = 'AuditEvent';
DELETE FROM resource_history WHERE rtype = 'AuditEvent';
DELETE FROM resource WHERE rtype = 'AuditEvent';

-- The sealer reads the unsealed rows by this partial index only: O(new rows), whatever the
-- statistics say (the old join walked `resource` in rid order when they were stale).
CREATE INDEX audit_log_unsealed ON audit_log (ord) WHERE seq IS NULL;
CREATE INDEX audit_log_patients ON audit_log USING gin (patients);
CREATE INDEX audit_log_recorded ON audit_log (recorded, ord);
"""

AUDIT_SEAL_IN_SQL_V147 = """
-- Sealing hashes in the database: one call chains up to max_rows unsealed events in append
-- order and returns the new head. The hash is the one socle/auth/audit_chain.py defines for a
-- stored canonical text: the hex SHA-256 of the domain, previous hash, seq and event, each but
-- the last followed by a line feed. An event
-- missing its text gets a hash no content has. It stops before the first event of an older
-- form (not canonical JSON: moved in from the resource table), which the server re-canonicalises.
CREATE FUNCTION audit_seal_batch(start_seq bigint, start_hash text, max_rows integer)
RETURNS TABLE (sealed integer, head_seq bigint, head_hash text, older_form boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    s bigint := start_seq;
    h text := start_hash;
    prev text;
    ords bigint[] := '{}';
    seqs bigint[] := '{}';
    prevs text[] := '{}';
    hashes text[] := '{}';
BEGIN
    older_form := false;
    FOR r IN
        SELECT l.ord, l.event FROM audit_log l WHERE l.seq IS NULL ORDER BY l.ord LIMIT max_rows
    LOOP
        IF r.event IS NOT NULL AND left(r.event, 10) <> '{"action":' THEN
            older_form := true;
            EXIT;
        END IF;
        prev := h;
        s := s + 1;
        IF r.event IS NULL THEN
            h := repeat('-', 64);
        ELSE
            h := encode(sha256(convert_to(
                'socle-audit-v1' || chr(10) || prev || chr(10) || s::text || chr(10) || r.event,
                'UTF8')), 'hex');
        END IF;
        ords := ords || r.ord;
        seqs := seqs || s;
        prevs := prevs || prev;
        hashes := hashes || h;
    END LOOP;
    UPDATE audit_log l SET seq = u.seq, prev_hash = u.prev, hash = u.hash
    FROM unnest(ords, seqs, prevs, hashes) AS u(ord, seq, prev, hash)
    WHERE l.ord = u.ord AND l.seq IS NULL;
    sealed := cardinality(ords);
    head_seq := s;
    head_hash := h;
    RETURN NEXT;
END
$$;
"""

PATIENT_DECEASED_V148 = """
-- Patient's `deceased` search parameter (`deceased.exists() and deceased != false`) was indexed
-- without the R4 model, which resolves the choice element: every Patient got `false`. Rows of
-- Patients that are deceased (a date, or deceasedBoolean true) now say `true`, as new writes do.
UPDATE idx_token t SET code = 'true'
FROM resource r
WHERE t.rid = r.rid AND t.rtype = 'Patient' AND t.param = 'deceased' AND t.code = 'false'
  AND r.rtype = 'Patient' AND NOT r.deleted
  AND (r.content ? 'deceasedDateTime' OR r.content->'deceasedBoolean' = 'true'::jsonb);
"""

JOBS_V181 = """
-- The outbox: one row per resource version written (create, update, patch, delete), inserted by
-- the write statement itself, so it commits or rolls back with the write. Readers take the rows
-- whose transaction is older than every one still running (`xid` < the snapshot's xmin), in `seq`
-- order: a row of a transaction committing late is never skipped.
CREATE TABLE event (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    rtype        text NOT NULL,
    id           text NOT NULL,
    version      integer NOT NULL,
    interaction  text NOT NULL,          -- create | update | patch | delete
    at           timestamptz NOT NULL    -- the transaction's time (the versions' lastUpdated)
);
-- Each reader's position in the outbox.
CREATE TABLE event_cursor (
    consumer  text PRIMARY KEY,
    seq       bigint NOT NULL DEFAULT 0,
    updated   timestamptz NOT NULL DEFAULT now()
);
-- The job queue: workers claim due jobs with FOR UPDATE SKIP LOCKED and hold a lease they renew
-- (heartbeat); a job whose lease ran out (its worker died) is queued again.
CREATE TABLE job (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL,
    args              jsonb NOT NULL DEFAULT '{}',
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    run_at            timestamptz NOT NULL DEFAULT now(),
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer,               -- NULL: the kind's, set when first claimed
    every_s           double precision,      -- periodic: queued again this long after each run
    dedupe            text UNIQUE,           -- at most one job per key (periodic jobs: their kind)
    worker            text,
    lease_until       timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    progress          jsonb,
    last_error        text,
    created           timestamptz NOT NULL DEFAULT now(),
    started           timestamptz,
    finished          timestamptz
);
CREATE INDEX job_due ON job (run_at) WHERE state = 'queued';
CREATE INDEX job_leases ON job (lease_until) WHERE state = 'running';
CREATE INDEX job_kind_state ON job (kind, state);
"""

WEB_SESSIONS_V190 = """
-- The pages' server-side sessions (socle/auth/sessions.py): the cookie carries a random id, the
-- table only its SHA-256, so a read of the table gives no usable cookie.
CREATE TABLE web_session (
    id_hash bytea PRIMARY KEY,
    subject text NOT NULL,
    claims jsonb NOT NULL,
    scope text NOT NULL,
    csrf_secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_session_subject ON web_session (subject);
"""

BULK_IMPORT_V160 = """
-- Bulk import (socle/bulk): one row per run with its counts (progress an operator can query),
-- and one row per committed chunk of an input, committed with the chunk's resources: a re-run
-- of the same input (same bytes: same fingerprint) skips the lines of its committed chunks.
CREATE TABLE bulk_import (
    id          uuid PRIMARY KEY,
    who         text NOT NULL,
    sources     text[] NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'done', 'failed', 'stopped')),
    started     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now(),
    chunks      integer NOT NULL DEFAULT 0,
    imported    bigint NOT NULL DEFAULT 0,   -- created or changed
    unchanged   bigint NOT NULL DEFAULT 0,   -- already stored with the same content
    rejected    bigint NOT NULL DEFAULT 0,   -- bad lines
    skipped     bigint NOT NULL DEFAULT 0,   -- lines of chunks an earlier run committed
    detail      text
);
CREATE TABLE bulk_import_chunk (
    fingerprint text NOT NULL,               -- SHA-256 of the input's bytes
    first_line  bigint NOT NULL,             -- 1-based
    lines       integer NOT NULL,
    source      text NOT NULL,
    import_id   uuid NOT NULL,
    imported    integer NOT NULL,
    unchanged   integer NOT NULL,
    rejected    integer NOT NULL,
    committed   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, first_line)
);
-- The bad lines: where, and the OperationOutcome saying why (kept for the report of a re-run).
CREATE TABLE bulk_import_error (
    fingerprint text NOT NULL,
    line        bigint NOT NULL,
    source      text NOT NULL,
    import_id   uuid NOT NULL,
    outcome     jsonb NOT NULL,
    PRIMARY KEY (fingerprint, line)
);
"""

TERMINOLOGY_V183 = """
-- Terminology (socle/fhir/terminology/): CodeSystems, ValueSets and ConceptMaps indexed for the
-- terminology operations. A stored resource's row (resource_id set) is derived from it in the
-- same transaction, like the search indexes; a loaded package's rows (resource_id NULL) come
-- from start-up or `socle terminology load`, skipped when the same digest is already there.
CREATE TABLE term_resource (
    key          bigserial PRIMARY KEY,
    kind         text NOT NULL,               -- CodeSystem | ValueSet | ConceptMap
    url          text COLLATE "C" NOT NULL,
    version      text COLLATE "C" NOT NULL DEFAULT '',
    resource_id  text,                        -- the stored resource's id; NULL: a package's
    origin       text NOT NULL,               -- 'stored', or the package it was loaded from
    digest       text NOT NULL,               -- of the content: a reload of the same is skipped
    content      jsonb NOT NULL               -- a CodeSystem without its concepts
);
CREATE UNIQUE INDEX term_resource_stored ON term_resource (kind, resource_id)
    WHERE resource_id IS NOT NULL;
CREATE UNIQUE INDEX term_resource_loaded ON term_resource (kind, url, version)
    WHERE resource_id IS NULL;
CREATE INDEX term_resource_url ON term_resource (kind, url, version);

-- One row per concept of a CodeSystem, in the code system's order (ord).
CREATE TABLE term_concept (
    cs            bigint NOT NULL REFERENCES term_resource (key) ON DELETE CASCADE,
    ord           integer NOT NULL,
    code          text COLLATE "C" NOT NULL,
    display       text,
    designations  jsonb,                      -- [{language, use, value}]
    parents       text[] NOT NULL DEFAULT '{}',
    ancestors     text[] NOT NULL DEFAULT '{}',  -- every code above it: is-a, $subsumes
    properties    jsonb,                      -- {code: [value as text, ...]}
    abstract      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (cs, code)
);
CREATE UNIQUE INDEX term_concept_order ON term_concept (cs, ord);
CREATE INDEX term_concept_ancestors ON term_concept USING gin (ancestors);

-- Folded words of each concept's code, display and designations: type-ahead filters are word
-- prefixes, a btree range scan (the embedded PostgreSQL has no pg_trgm).
CREATE TABLE term_word (
    cs    bigint NOT NULL REFERENCES term_resource (key) ON DELETE CASCADE,
    word  text COLLATE "C" NOT NULL,
    ord   integer NOT NULL,
    PRIMARY KEY (cs, word, ord)
);
-- a concept's words: a filter word that starts thousands of words is checked concept by concept
CREATE INDEX term_word_concept ON term_word (cs, ord, word);

-- What was loaded from each package (start-up sources, `socle terminology load`): a start-up
-- finding the same digest loads nothing.
CREATE TABLE term_package (
    name       text PRIMARY KEY,
    digest     text NOT NULL,
    resources  integer NOT NULL,
    concepts   integer NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
"""

# -- patient space (socle/portal), migrations 260-269 --------------------------------------------
PATIENT_ACTIVATION_V260 = """
-- Activation codes an establishment hands a patient for their first login (socle/portal/
-- activation.py): only the code's SHA-256 is kept, single use, expiring.
CREATE TABLE patient_activation_code (
    code_hash   bytea PRIMARY KEY,
    patient_id  text NOT NULL,
    created_by  text NOT NULL,               -- who issued it (operator, establishment client)
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX patient_activation_code_patient ON patient_activation_code (patient_id);
"""

PATIENT_NOTIFICATIONS_V261 = """
-- A patient's notification preferences (socle/portal/notifications.py), read by messaging.
CREATE TABLE patient_notification_preference (
    patient_id   text PRIMARY KEY,
    email        text,                        -- opt-in: null or not chosen, no e-mail is sent
    email_opt_in boolean NOT NULL DEFAULT false,
    new_document boolean NOT NULL DEFAULT true,
    new_access   boolean NOT NULL DEFAULT false,
    new_message  boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT email_opt_in OR email IS NOT NULL)
);
"""

# -- bulkexport (210-219) --------------------------------------------------------------------
ASYNC_REQUESTS_V210 = """
-- Asynchronous requests (socle/bulk/): $export, $import, and searches or Bundles sent with
-- Prefer: respond-async. One row per kick-off: who asked (the principal, to run the job with
-- its access and to serve the status and files to it only), what, and how it ended.
CREATE TABLE async_request (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL,               -- export | import | search | bundle
    owner       text NOT NULL,               -- issuer#subject|client: the only one served
    principal   jsonb NOT NULL,
    request     text NOT NULL,               -- the kick-off URL, as the manifest says it
    args        jsonb NOT NULL,
    job_id      bigint,
    state       text NOT NULL DEFAULT 'accepted',  -- accepted | done | failed | cancelled
    status      integer,                     -- the HTTP status of the outcome when done/failed
    result      jsonb,                       -- the manifest, or an OperationOutcome
    response    text,                        -- a search's or a Bundle's response Bundle
    transaction_time timestamptz,
    created     timestamptz NOT NULL DEFAULT now(),
    finished    timestamptz,
    expires     timestamptz
);
CREATE INDEX async_request_expires ON async_request (expires) WHERE expires IS NOT NULL;

-- The NDJSON files of an export (output and errors), in the export folder.
CREATE TABLE async_file (
    request_id  uuid NOT NULL REFERENCES async_request (id) ON DELETE CASCADE,
    name        text NOT NULL,
    rtype       text NOT NULL,
    kind        text NOT NULL,               -- output | error
    count       integer NOT NULL,
    bytes       bigint NOT NULL,
    patients    text[] NOT NULL DEFAULT '{}', -- whose data it holds, for the download's audit
    PRIMARY KEY (request_id, name)
);
"""

# Versions need not be contiguous, and a lower version added later is still applied (each
# version is applied once, in ascending order, if not recorded).
# -- Subscriptions (socle/subscriptions/): migrations 200-209 --------------------------------
SUBSCRIPTIONS_V200 = """
-- The state of each Subscription resource (socle/subscriptions/): its owner (the principal who
-- created it, as the security service captured it), status, the last event number given and the
-- last delivered; and the events matched for it, numbered per subscription, kept for $events.
CREATE TABLE subscription_state (
    id           text PRIMARY KEY,          -- Subscription.id
    owner        jsonb,                     -- NULL: the platform's own
    status       text NOT NULL,             -- requested | active | error | off
    events       bigint NOT NULL DEFAULT 0, -- the last event number given
    delivered    bigint NOT NULL DEFAULT 0, -- the last event number delivered
    error        text,
    wake_job     bigint,                    -- the delivery job queued for it, if any
    last_sent    timestamptz,               -- the last notification (heartbeats count from it)
    updated      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE subscription_event (
    subscription text NOT NULL,
    number       bigint NOT NULL,
    rtype        text NOT NULL,
    id           text NOT NULL,
    version      integer NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (subscription, number)
);
-- Websocket binding tokens ($get-ws-binding-token): their SHA-256 only, used once, short-lived.
CREATE TABLE subscription_ws_token (
    token_hash    bytea PRIMARY KEY,
    subscriptions text[] NOT NULL,
    expires       timestamptz NOT NULL
);
"""


MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "engine storage and search index tables", ENGINE_V1),
    (2, "reindex jobs of run-time search parameters", SEARCH_REINDEX_V2),
    (3, "composite search parameters", COMPOSITE_V3),
    (4, "resource owner, audit chain, break-glass grants", SECURITY_V4),
    (5, "built-in authorisation server", AUTH_SERVER_V5),
    (146, "lean audit trail: events in audit_log, served as AuditEvents", AUDIT_LEAN_V146),
    (147, "audit sealing hashes in the database", AUDIT_SEAL_IN_SQL_V147),
    (148, "Patient deceased search index: deceased patients say true", PATIENT_DECEASED_V148),
    (160, "bulk import runs and committed chunks", BULK_IMPORT_V160),
    (181, "outbox events and the job queue", JOBS_V181),
    (183, "terminology: code systems, concepts and their words", TERMINOLOGY_V183),
    (190, "server-side sessions of the web pages", WEB_SESSIONS_V190),
    (200, "subscriptions: state, numbered events, websocket binding tokens", SUBSCRIPTIONS_V200),
    # patient space
    (260, "patient activation codes (hashed, single use)", PATIENT_ACTIVATION_V260),
    (261, "patient notification preferences", PATIENT_NOTIFICATIONS_V261),
    # bulkexport (210-219)
    (210, "asynchronous requests: bulk export, import, async searches", ASYNC_REQUESTS_V210),
]


# --- Secure messaging (socle/messaging/, docs/messaging.md): migrations 220-229 ---------------
MESSAGING_V220 = """
-- Mailboxes (MSSanté kinds PER/ORG/APP, TRE_R257, and citizen mailboxes PAT): who owns each
-- (a FHIR reference), the national identifier it is attached to (RPPS, FINESS, INS), the
-- password of SMTP submission (scrypt, as the patient accounts'), the quota and what it holds.
CREATE TABLE mailbox (
    address     text PRIMARY KEY CHECK (address = lower(address)),
    kind        text NOT NULL CHECK (kind IN ('PER', 'ORG', 'APP', 'PAT')),
    owner       text NOT NULL,
    identifier  text,
    display     text,
    password_hash text,
    quota_bytes bigint,
    used_bytes  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mailbox_owner ON mailbox (owner);
-- Every message accepted by the SMTP server (or the $send operation), stored before the 250:
-- the raw bytes and the envelope. The jobs that deliver it (a Communication for the local
-- recipients, the relay for the others) read it from here, so a crash loses nothing.
CREATE TABLE mail_message (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL,
    sender      text NOT NULL,
    local_recipients text[] NOT NULL,
    foreign_recipients text[] NOT NULL,
    authenticated text,
    size        bigint NOT NULL,
    raw         bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    relayed_at  timestamptz,
    relay_error text
);
CREATE INDEX mail_message_message_id ON mail_message (message_id);
"""
MIGRATIONS += [(220, "secure messaging: mailboxes and accepted messages", MESSAGING_V220)]

# subscriptions.prune (socle/subscriptions/store.py) deletes old delivered events by time.
SUBSCRIPTION_EVENTS_V280 = """
CREATE INDEX subscription_event_at ON subscription_event (at);
"""
MIGRATIONS += [(280, "subscriptions: events by time, for pruning", SUBSCRIPTION_EVENTS_V280)]


def migrate(conn: psycopg.Connection, before: int | None = None) -> list[int]:
    """Apply pending migrations (those numbered below `before`, when given: a database as an
    earlier version left it, for the tests of a migration); returns the versions applied."""
    applied: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS socle_schema ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM socle_schema")}
        for version, description, sql in sorted(MIGRATIONS):
            if version in done or (before is not None and version >= before):
                continue
            with conn.transaction():
                conn.execute(sql)  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO socle_schema (version, description) VALUES (%s, %s)",
                    (version, description),
                )
            applied.append(version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


# --- Secure messaging, the mail path (mailwire): migrations 270-279 --------------------------
MESSAGING_MAIL_PATH_V270 = """
-- What the delivery did with a message's documents, per local recipient mailbox (filed to the
-- shared record: the DocumentReferences; or not, and why: the MDN code), kept so a delivery
-- run again (a worker killed mid-way) neither files twice nor answers differently.
ALTER TABLE mail_message ADD COLUMN filing jsonb;
-- An acknowledgement (MDN) is itself an accepted message answering another: one per
-- (original message, answering mailbox).
ALTER TABLE mail_message ADD COLUMN answers bigint;
CREATE UNIQUE INDEX mail_message_answer ON mail_message (answers, sender)
    WHERE answers IS NOT NULL;
"""
MIGRATIONS += [
    (270, "secure messaging: filing outcomes and acknowledgements", MESSAGING_MAIL_PATH_V270)
]
MESSAGING_UNLISTED_V271 = """
-- A mailbox on the Annuaire's red list (listeRouge): published in its owner's telecom with
-- listeRouge = true, and then not found by the directory look-ups.
ALTER TABLE mailbox ADD COLUMN unlisted boolean NOT NULL DEFAULT false;
"""
MIGRATIONS += [(271, "secure messaging: unlisted (listeRouge) mailboxes", MESSAGING_UNLISTED_V271)]
MESSAGING_CLIENT_CERT_V340 = """
-- Mutual TLS: a mailbox (typically an application's) pinned to the SHA-256 of the client
-- certificate that may authenticate as it (SASL EXTERNAL after STARTTLS).
ALTER TABLE mailbox ADD COLUMN cert_sha256 text;
CREATE INDEX mailbox_cert ON mailbox (cert_sha256) WHERE cert_sha256 IS NOT NULL;
"""
MIGRATIONS += [
    (340, "secure messaging: mailboxes pinned to client certificates", MESSAGING_CLIENT_CERT_V340)
]
MESSAGING_FILING_RULES_V341 = """
-- A mailbox's own filing rule (socle/messaging/mailboxes.FilingRule as JSON: mode always |
-- asked | never, document types, senders); NULL: its kind's default.
ALTER TABLE mailbox ADD COLUMN filing jsonb;
"""
MIGRATIONS += [(341, "secure messaging: filing rules per mailbox", MESSAGING_FILING_RULES_V341)]
MESSAGING_USAGE_V342 = """
-- What accepted messages add to their mailboxes' usage, one row per message and mailbox: an
-- insert takes no lock another acceptance waits for (an UPDATE of mailbox.used_bytes held the
-- busy mailbox's row until each commit, so one mailbox accepted one message per fsync). A
-- mailbox's usage is used_bytes plus its rows here; a periodic job folds them into used_bytes.
CREATE TABLE mailbox_usage (
    address  text NOT NULL REFERENCES mailbox (address) ON DELETE CASCADE,
    bytes    bigint NOT NULL
);
CREATE INDEX mailbox_usage_address ON mailbox_usage (address);
"""
MIGRATIONS += [(342, "secure messaging: mailbox usage without a hot row", MESSAGING_USAGE_V342)]


# --- Secure messaging, the mailbox's state (mailstate): migrations 320-329 -------------------
MESSAGING_MAILBOX_STATE_V320 = """
-- Read / unread per recipient mailbox: a row says the mailbox's owner opened the message (the
-- page, or $read-state); no row, unread. Configuration of the mailbox, not clinical data: it
-- stays beside the mailbox, not in the message's Communication that every participant shares.
CREATE TABLE mail_read (
    address  text NOT NULL REFERENCES mailbox (address) ON DELETE CASCADE,
    message  bigint NOT NULL REFERENCES mail_message (id) ON DELETE CASCADE,
    read_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (address, message)
);
-- The unread count of a mailbox: its delivered messages (local_recipients @> {address}).
CREATE INDEX mail_message_local_recipients ON mail_message USING gin (local_recipients);
-- The new-message e-mail to a recipient's personal address: queued once per (message,
-- mailbox), whatever the number of times the delivery runs; sent_at once the relay took it.
CREATE TABLE mail_notice (
    address  text NOT NULL REFERENCES mailbox (address) ON DELETE CASCADE,
    message  bigint NOT NULL REFERENCES mail_message (id) ON DELETE CASCADE,
    queued_at timestamptz NOT NULL DEFAULT now(),
    sent_at  timestamptz,
    PRIMARY KEY (address, message)
);
"""
MIGRATIONS += [
    (320, "secure messaging: read state and new-message notices", MESSAGING_MAILBOX_STATE_V320)
]
MESSAGING_NOTICE_ADDRESS_V321 = """
-- A professional's personal address for the new-message e-mail, per mailbox (a patient's is in
-- patient_notification_preference): set and removed from the « Messagerie » page.
CREATE TABLE mailbox_notice_address (
    address    text PRIMARY KEY REFERENCES mailbox (address) ON DELETE CASCADE,
    email      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""
MIGRATIONS += [
    (
        321,
        "secure messaging: professionals' new-message e-mail address",
        MESSAGING_NOTICE_ADDRESS_V321,
    )
]


# --- The operators' pages (opspages): migrations 300-309 -------------------------------------
OPERATOR_ACCOUNTS_V300 = """
-- The platform's staff (GRADeS operators): password (scrypt) + TOTP, as patient accounts.
CREATE TABLE operator_account (
    login            text PRIMARY KEY,
    display_name     text NOT NULL,
    password_hash    text NOT NULL,
    totp_secret_enc  bytea NOT NULL,               -- AES-GCM, 'operator:<login>' as AAD
    totp_last_step   bigint NOT NULL DEFAULT 0,    -- a TOTP code is accepted once
    failed_attempts  integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
"""
MIGRATIONS += [(300, "operator (staff) accounts: password + TOTP", OPERATOR_ACCOUNTS_V300)]


# --- The staff accounts page (staff): migrations 330-339 -------------------------------------
STAFF_ACCOUNTS_V330 = """
-- Managing the staff from the pages: who may (admin), one-time passwords that must be
-- changed, TOTP enrolment at the next login (no secret yet), and the last login.
ALTER TABLE operator_account
    ADD COLUMN admin boolean NOT NULL DEFAULT false,
    ADD COLUMN must_change_password boolean NOT NULL DEFAULT false,
    ADD COLUMN last_login_at timestamptz,
    ALTER COLUMN totp_secret_enc DROP NOT NULL;   -- NULL: the next login enrols a TOTP
"""
MIGRATIONS += [
    (330, "staff accounts: admin, one-time passwords, TOTP enrolment", STAFF_ACCOUNTS_V330)
]
STAFF_ROLES_V331 = """
-- What a staff account is for: the platform's operation (the GRADeS), or the ARS's analysts
-- (the regional observatory's pages). Only an operator administers the staff accounts.
ALTER TABLE operator_account
    ADD COLUMN role text NOT NULL DEFAULT 'operator' CHECK (role IN ('operator', 'ars-analyst')),
    ADD CONSTRAINT operator_account_admin_is_operator CHECK (role = 'operator' OR NOT admin);
"""
MIGRATIONS += [(331, "staff accounts: operators and ARS analysts", STAFF_ROLES_V331)]


# --- Coordination, the inbox and reminders (inbox): migrations 350-359 -----------------------
COORDINATION_REMINDERS_V350 = """
-- The coordination service's reminders of tasks due (socle/coordination/reminders.py): one
-- row per task and due date, claimed (committed) before the mail leaves, so it never goes
-- twice; sent_at once the relay took it.
CREATE TABLE coordination_reminder (
    task_id    text NOT NULL,
    due        text NOT NULL,
    owner      text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    PRIMARY KEY (task_id, due)
);
"""
MIGRATIONS += [(350, "coordination: reminders of tasks due", COORDINATION_REMINDERS_V350)]


# --- Coordination: invitations by a one-time link (conversation): migrations 360-369 ---------
CIRCLE_INVITATION_LINK_V360 = """
-- The one-time link mailed with an invitation to a care circle (a Task): only the token's
-- SHA-256 is kept; who may use it (the RPPS or the MSSanté address invited), until when, and
-- when it was used (once). Withdrawing the invitation (the Task cancelled) revokes it.
CREATE TABLE circle_invitation_link (
    token_hash  bytea PRIMARY KEY,
    task_id     text NOT NULL,
    rpps        text,
    address     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (rpps IS NOT NULL OR address IS NOT NULL)
);
CREATE INDEX circle_invitation_link_task ON circle_invitation_link (task_id);
"""
MIGRATIONS += [(360, "coordination: one-time invitation links", CIRCLE_INVITATION_LINK_V360)]

# --- People who act for a patient (portal/representatives): migrations 370-379 ---------------
REPRESENTATIVE_ACCOUNTS_V370 = """
-- A representative (a parent, a guardian: a RelatedPerson of the patient) signs in to the
-- patient space with an account of his own. His activation code is one of the patients'
-- codes bound to his RelatedPerson too (one store, one mechanism); NULL: the patient's own.
ALTER TABLE patient_activation_code ADD COLUMN related_person_id text;
CREATE INDEX patient_activation_code_related_person
    ON patient_activation_code (related_person_id) WHERE related_person_id IS NOT NULL;
CREATE TABLE representative_account (
    related_person_id  text PRIMARY KEY,
    patient_id         text NOT NULL,              -- the represented patient
    login              text NOT NULL UNIQUE,       -- given at the activation (rep-xxxxxxxx)
    password_hash      text NOT NULL,
    totp_secret_enc    bytea NOT NULL,             -- AES-GCM, 'RelatedPerson/<id>' as AAD
    totp_last_step     bigint NOT NULL DEFAULT 0,  -- a TOTP code is accepted once
    failed_attempts    integer NOT NULL DEFAULT 0,
    locked_until       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX representative_account_patient ON representative_account (patient_id);
"""
MIGRATIONS += [
    (370, "representative accounts and their activation codes", REPRESENTATIVE_ACCOUNTS_V370)
]

# --- Secure messaging throughput (docs/performance.md): migrations 380-389 ------------------
MESSAGING_RAW_EXTERNAL_V380 = """
-- A message's raw bytes are stored out of line without compression: what makes a message big
-- is its attachments in base64 of already compressed content (zip, PDF, JPEG), which pglz tried
-- to compress at every acceptance (about 280 KB for a 200 KB attachment) for nothing. Uncompressed
-- out-of-line values also let substring(raw from 1 for n), the header-block reads of
-- messaging/store.py, fetch only the first TOAST chunks. Rows stored before keep their form.
ALTER TABLE mail_message ALTER COLUMN raw SET STORAGE EXTERNAL;
"""
MIGRATIONS += [
    (380, "secure messaging: raw messages stored uncompressed", MESSAGING_RAW_EXTERNAL_V380)
]

# --- Identity (socle/identity): migrations 420-429 ----------------------------------------------
IDENTITY_TRAITS_V420 = """
-- The identity traits of every stored Patient (socle/identity/trait_rows.py), written with the
-- Patient in its unit of work: the duplicate report, the watcher and the simulated INSi read
-- these rows instead of keeping every Patient in each worker. Filled for existing Patients at
-- start-up (the traits are computed in Python: accents, phonetic keys, blocking keys).
CREATE TABLE identity_trait (
    id            text PRIMARY KEY,          -- Patient id
    version       integer NOT NULL,          -- the Patient version the row was computed from
    updated       timestamptz NOT NULL,      -- its last_updated (the watcher's high-water mark)
    readable      boolean NOT NULL,          -- false: traits unreadable, left out of everything
    active        boolean NOT NULL,          -- Patient.active is not false
    birth_family  text NOT NULL,
    birth_given   text[] NOT NULL,
    birth_date    date,
    sex           text,
    birthplace    text,
    used_family   text,
    used_given    text,
    ins_value     text[] NOT NULL,           -- the INS identifiers (use old left out) ...
    ins_oid       text[] NOT NULL,           -- ... and the OID of each
    nss           text,
    status        text,                      -- identity status (PROV, RECUP, VALI, QUAL)
    generated_duplicate boolean NOT NULL,    -- the region generator's duplicate tag
    family_key    text NOT NULL,             -- compact birth family name
    blocking      text[] NOT NULL,           -- duplicates.blocking_keys (also in identity_block)
    -- the simulated INSi's identity of this record, when it is one of its reference identities
    ref_nir       text,
    ref_oid       text
);
-- The blocking keys of the active readable rows, one row each: candidates are looked up by key
-- (a btree: thousands of keys at once cost milliseconds, where `text[] &&` compares every key
-- of every row) and the report's pairs are a join on it.
CREATE TABLE identity_block (
    key  text COLLATE "C" NOT NULL,
    id   text NOT NULL,
    PRIMARY KEY (key, id)
);
CREATE INDEX identity_block_id ON identity_block (id);
CREATE INDEX identity_trait_ins ON identity_trait USING gin (ins_value) WHERE active AND readable;
CREATE INDEX identity_trait_updated ON identity_trait (updated);
CREATE INDEX identity_trait_reference ON identity_trait (family_key, birth_date)
    WHERE ref_nir IS NOT NULL;
CREATE INDEX identity_trait_reference_nir ON identity_trait (ref_nir) WHERE ref_nir IS NOT NULL;
"""
MIGRATIONS += [(420, "identity traits of the stored Patients", IDENTITY_TRAITS_V420)]

# --- The write statement's own refusal (createperf): migration 430 -------------------------------
WRITE_REFUSAL_V430 = """
-- Called by the engine's write statement when a check it carries finds a refusal (a reference
-- the writer may not make): the statement fails whole, nothing of it is written, and the
-- client's answer names what `what` numbers (SQLSTATE SO422, the number in DETAIL).
CREATE FUNCTION socle_refuse(what bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'write refused' USING ERRCODE = 'SO422', DETAIL = what::text;
END
$$;
"""
MIGRATIONS += [(430, "the write statement's own refusal", WRITE_REFUSAL_V430)]

# --- Identity, the incremental duplicate report: migrations 450-459 ------------------------------
IDENTITY_PAIRS_V450 = """
-- The duplicate report kept up to date (socle/identity/pair_rows.py): every pair of records the
-- report compares (sharing a block, within its first max_block + 1 records), scored once. A
-- Patient write queues its id and the blocking keys it had and has (identity_pair_change, in its
-- transaction); the next reader of the report re-scores the pairs of the queued records only.
CREATE TABLE identity_pair (
    a             text NOT NULL,             -- the earlier record in id order
    b             text NOT NULL,
    score_traits  double precision NOT NULL, -- the traits' score (use_identifiers off)
    score_ids     double precision NOT NULL, -- with the INS / NSS evidence
    evidence      text[],                    -- the traits' evidence, when either score >= 7
    id_evidence   text[],                    -- the identifiers' evidence, idem
    PRIMARY KEY (a, b)
);
CREATE INDEX identity_pair_b ON identity_pair (b);
-- the report reads the candidates (scores at or above the default "possible" threshold) only
CREATE INDEX identity_pair_ids ON identity_pair (score_ids DESC, a, b) WHERE score_ids >= 7;
CREATE INDEX identity_pair_traits ON identity_pair (score_traits DESC, a, b)
    WHERE score_traits >= 7;
-- records whose pairs are to be re-scored, with every blocking key and INS they had or have
CREATE TABLE identity_pair_change (
    seq         bigserial PRIMARY KEY,
    id          text NOT NULL,
    keys        text[] NOT NULL,
    ins         text[] NOT NULL,
    live_delta  smallint NOT NULL            -- +1 made active and readable, -1 no longer
);
-- the blocks holding more than max_block + 1 records (the report's oversized count)
CREATE TABLE identity_oversized (key text COLLATE "C" PRIMARY KEY);
-- the records of the INS collisions: several INS, or an INS another record holds too
CREATE TABLE identity_colliding (id text PRIMARY KEY);
-- the report's counts as of the last refresh: active readable records, pairs compared
CREATE TABLE identity_report_total (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    records   bigint NOT NULL,
    compared  bigint NOT NULL
);
INSERT INTO identity_report_total (records, compared)
    SELECT count(*) FILTER (WHERE active AND readable), 0 FROM identity_trait;
-- a refresh looks up the holders of the changed records' INS at every read: without a pending
-- list (up to 4 MB scanned at each look-up until a vacuum) an insert costs an entry or two
ALTER INDEX identity_trait_ins SET (fastupdate = off);
-- the Patients stored before: all their pairs to score at the first read of the report
INSERT INTO identity_pair_change (id, keys, ins, live_delta)
    SELECT id, blocking, ins_value, 0 FROM identity_trait ORDER BY id;
"""
MIGRATIONS += [(450, "identity: the duplicate report kept incrementally", IDENTITY_PAIRS_V450)]


# --- The audit chain beside the records (auditseal): migrations 490-499 -----------------------
AUDIT_SEAL_TABLE_V490 = """
-- The chain leaves audit_log: sealing set seq, prev_hash and hash on every record, and as seq
-- was in the predicate of the unsealed rows' partial index the update was never HOT: each record
-- was written twice, with each of its indexes (the GIN of its patients too), and left a dead
-- tuple to vacuum. audit_log is now written once and never updated; the sealer appends each
-- record's place in the chain to audit_seal, and takes the records waiting for it from
-- audit_pending (filled by a trigger in the INSERT's own statement: a record that commits after
-- later ones were sealed still waits there, whatever its ord).
CREATE TABLE audit_seal (
    ord        bigint PRIMARY KEY,       -- the audit_log record
    seq        bigint NOT NULL UNIQUE,
    prev_hash  text NOT NULL,
    hash       text NOT NULL
);
INSERT INTO audit_seal (ord, seq, prev_hash, hash)
    SELECT ord, seq, prev_hash, hash FROM audit_log WHERE seq IS NOT NULL;
CREATE TABLE audit_pending (ord bigint PRIMARY KEY);
INSERT INTO audit_pending (ord) SELECT ord FROM audit_log WHERE seq IS NULL;
DROP INDEX audit_log_unsealed;
ALTER TABLE audit_log DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
CREATE UNIQUE INDEX audit_log_ord ON audit_log (ord);  -- the sealer's and verifier's join

CREATE FUNCTION audit_log_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (ord) SELECT ord FROM appended;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_log_pending AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION audit_log_pending();

-- As migration 147's, reading the waiting records and appending their chain places. Each event
-- is looked up by its ord (a nested loop whatever the statistics of audit_pending say: never a
-- scan of audit_log). A waiting record whose row is gone (deleted before it was sealed) gets a
-- hash no content has.
CREATE OR REPLACE FUNCTION audit_seal_batch(start_seq bigint, start_hash text, max_rows integer)
RETURNS TABLE (sealed integer, head_seq bigint, head_hash text, older_form boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    s bigint := start_seq;
    h text := start_hash;
    prev text;
    ords bigint[] := '{}';
    seqs bigint[] := '{}';
    prevs text[] := '{}';
    hashes text[] := '{}';
BEGIN
    older_form := false;
    FOR r IN
        SELECT p.ord, (SELECT l.event FROM audit_log l WHERE l.ord = p.ord) AS event
        FROM audit_pending p ORDER BY p.ord LIMIT max_rows
    LOOP
        IF r.event IS NOT NULL AND left(r.event, 10) <> '{"action":' THEN
            older_form := true;
            EXIT;
        END IF;
        prev := h;
        s := s + 1;
        IF r.event IS NULL THEN
            h := repeat('-', 64);
        ELSE
            h := encode(sha256(convert_to(
                'socle-audit-v1' || chr(10) || prev || chr(10) || s::text || chr(10) || r.event,
                'UTF8')), 'hex');
        END IF;
        ords := ords || r.ord;
        seqs := seqs || s;
        prevs := prevs || prev;
        hashes := hashes || h;
    END LOOP;
    INSERT INTO audit_seal (ord, seq, prev_hash, hash)
        SELECT * FROM unnest(ords, seqs, prevs, hashes);
    DELETE FROM audit_pending WHERE ord = ANY (ords);
    sealed := cardinality(ords);
    head_seq := s;
    head_hash := h;
    RETURN NEXT;
END
$$;
"""
MIGRATIONS += [(490, "audit chain in audit_seal, records written once", AUDIT_SEAL_TABLE_V490)]

# --- Audited reads by id (readperf6): migrations 540-549 ---------------------------------------
AUDIT_AGENTS_V540 = """
-- A professional's access history (« mes accès récents ») and AuditEvent ?agent= searches
-- select the records by `agents && …`: without an index they scanned the whole trail.
CREATE INDEX audit_log_agents ON audit_log USING gin (agents);
"""
MIGRATIONS += [(540, "audit trail: records by agent", AUDIT_AGENTS_V540)]

# The rows of Observation's combo-* parameters: each is the union of two others' rows (combo-code
# = code | component-code, ...), no longer stored since a search on one reads its bases' rows
# (socle/fhir/indexing/extract.py, `aliases`, whose list for the built-in parameters this is; a
# test keeps them equal). One DELETE per table.
ALIAS_ROWS_V550 = """
DELETE FROM idx_token WHERE rtype = 'Observation'
    AND param IN ('combo-code', 'combo-data-absent-reason', 'combo-value-concept');
DELETE FROM idx_quantity WHERE rtype = 'Observation' AND param = 'combo-value-quantity';
DELETE FROM idx_composite WHERE rtype = 'Observation'
    AND param IN ('combo-code-value-concept', 'combo-code-value-quantity');
"""
MIGRATIONS += [(550, "alias parameters' index rows no longer stored", ALIAS_ROWS_V550)]

# The outbox read in the order of its transactions, (xid, seq), not of seq alone
# (socle/workers/events.py): a transaction given its id first may number its events after a
# younger one's, whose row, committed later, fell behind a reader's seq position and was never
# read. Each reader's position gains the transaction id; an existing one is placed before the
# oldest transaction with rows it had not read (those re-read are the rare inverted ones: an
# event read twice, none skipped). The key becomes (xid, seq), the readers' order: still one
# index written per event (nothing reads by seq alone).
EVENT_ORDER_V560 = """
ALTER TABLE event DROP CONSTRAINT event_pkey, ADD CONSTRAINT event_pkey PRIMARY KEY (xid, seq);
ALTER TABLE event_cursor ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
UPDATE event_cursor c SET xid = coalesce(
    (SELECT e.xid FROM event e WHERE e.seq > c.seq ORDER BY e.xid LIMIT 1),
    (SELECT e.xid FROM event e ORDER BY e.xid DESC LIMIT 1),
    '0');
"""
MIGRATIONS += [(560, "outbox readers in transaction order (xid, seq)", EVENT_ORDER_V560)]
