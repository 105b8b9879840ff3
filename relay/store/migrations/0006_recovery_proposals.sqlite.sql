-- 0006 recovery proposals (issue 5, k of n for every chain change): a partner may propose
-- recovering its own chain with a fresh trust anchor. SQLite cannot change a CHECK
-- constraint in place, so the proposals table is rebuilt with the new kind, and its
-- decisions with it (they reference it): child first out, parent first in, the renames
-- then point the decisions' reference at the rebuilt table. Every row is kept as it was.

CREATE TABLE proposals_v6 (
    proposal_id     TEXT    PRIMARY KEY,
    institution     TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('register', 'update_endpoint', 'recover')),
    chain_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL
                    CHECK (state IN ('pending', 'applied', 'rejected', 'failed', 'expired')),
    status_message  TEXT    NOT NULL DEFAULT '',
    signed          BLOB    NOT NULL,
    submitted_by    TEXT    NOT NULL,
    submitted_at_ns INTEGER NOT NULL,
    expires_at_ns   INTEGER NOT NULL,
    updated_at_ns   INTEGER NOT NULL
) STRICT;

INSERT INTO proposals_v6 SELECT * FROM proposals;

CREATE TABLE proposal_decisions_v6 (
    proposal_id     TEXT    NOT NULL REFERENCES proposals_v6 (proposal_id),
    operator_id     TEXT    NOT NULL,
    decision        TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment         TEXT    NOT NULL DEFAULT '',
    decided_at_ns   INTEGER NOT NULL,
    PRIMARY KEY (proposal_id, operator_id)
) STRICT;

INSERT INTO proposal_decisions_v6 SELECT * FROM proposal_decisions;

DROP TABLE proposal_decisions;
DROP TABLE proposals;
ALTER TABLE proposals_v6 RENAME TO proposals;
ALTER TABLE proposal_decisions_v6 RENAME TO proposal_decisions;

CREATE INDEX proposals_by_institution ON proposals (institution, submitted_at_ns);
