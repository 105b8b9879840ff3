-- 0003 audit (PostgreSQL dialect of 0003_audit.sqlite.sql, issue 7): the append-only
-- RFC 6962 audit log's leaves and every signed checkpoint.

CREATE TABLE audit_leaves (
    idx             BIGINT  PRIMARY KEY CHECK (idx >= 0),
    entry           BYTEA   NOT NULL,
    leaf_hash       BYTEA   NOT NULL,
    court           TEXT    NOT NULL DEFAULT '',
    at_ns           BIGINT  NOT NULL
);

CREATE INDEX audit_leaves_by_court ON audit_leaves (court, idx);

CREATE TABLE audit_checkpoints (
    size            BIGINT  PRIMARY KEY CHECK (size >= 0),
    root            BYTEA   NOT NULL,
    note            BYTEA   NOT NULL,
    at_ns           BIGINT  NOT NULL
);
