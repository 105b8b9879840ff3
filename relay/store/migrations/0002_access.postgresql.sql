-- 0002 access (PostgreSQL dialect of 0002_access.sqlite.sql, issue 5): signed partner
-- proposals, operator decisions, seen nonces and the record of every admin action.

CREATE TABLE proposals (
    proposal_id     TEXT    PRIMARY KEY,
    institution     TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('register', 'update_endpoint')),
    chain_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('pending', 'applied', 'rejected', 'failed', 'expired')),
    status_message  TEXT    NOT NULL DEFAULT '',
    signed          BYTEA   NOT NULL,
    submitted_by    TEXT    NOT NULL,
    submitted_at_ns BIGINT  NOT NULL,
    expires_at_ns   BIGINT  NOT NULL,
    updated_at_ns   BIGINT  NOT NULL
);

CREATE INDEX proposals_by_institution ON proposals (institution, submitted_at_ns);

CREATE TABLE proposal_decisions (
    proposal_id     TEXT    NOT NULL REFERENCES proposals (proposal_id),
    operator_id     TEXT    NOT NULL,
    decision        TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment         TEXT    NOT NULL DEFAULT '',
    decided_at_ns   BIGINT  NOT NULL,
    PRIMARY KEY (proposal_id, operator_id)
);

-- A nonce is bound to its institution; the pair is refused forever after first use.
CREATE TABLE proposal_nonces (
    institution     TEXT    NOT NULL,
    nonce           BYTEA   NOT NULL,
    expires_at_ns   BIGINT  NOT NULL,
    PRIMARY KEY (institution, nonce)
);

CREATE TABLE admin_actions (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ns           BIGINT  NOT NULL,
    actor           TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL DEFAULT '',
    outcome         TEXT    NOT NULL,
    detail          TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX admin_actions_by_time ON admin_actions (at_ns);
