-- 0007 evidence heights (PostgreSQL dialect of 0007_evidence_heights.sqlite.sql): the heights
-- each replica recently served evidence at, so the sync owner's pruning keeps them.

CREATE TABLE evidence_heights (
    chain_id    TEXT    NOT NULL,
    height      BIGINT  NOT NULL CHECK (height >= 0),
    used_at_ns  BIGINT  NOT NULL,
    PRIMARY KEY (chain_id, height)
);
