-- 0003 audit (issue 7): the tamper-evident audit log of every query and admin action, an
-- RFC 6962 Merkle log. audit_leaves is append-only: leaf i is the i-th entry (canonical JSON,
-- relay/audit/entry.py) and its RFC 6962 leaf hash; the relay recomputes the tree from these
-- rows at start-up and before signing each checkpoint, so a deleted or edited row is found.
-- audit_checkpoints keeps every signed checkpoint (a C2SP signed note). Times are integer
-- nanoseconds since the Unix epoch.

CREATE TABLE audit_leaves (
    idx             INTEGER PRIMARY KEY CHECK (idx >= 0),
    entry           BLOB    NOT NULL,
    leaf_hash       BLOB    NOT NULL,
    court           TEXT    NOT NULL DEFAULT '',
    at_ns           INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_leaves_by_court ON audit_leaves (court, idx);

CREATE TABLE audit_checkpoints (
    size            INTEGER PRIMARY KEY CHECK (size >= 0),
    root            BLOB    NOT NULL,
    note            BLOB    NOT NULL,
    at_ns           INTEGER NOT NULL
) STRICT;
