-- 0007 evidence heights (issue 9): the heights each replica recently served evidence at, so
-- the sync owner's pruning keeps what other replicas' answers rest on, not only its own.
-- One row per (chain, height) with the latest time evidence was served there.

CREATE TABLE evidence_heights (
    chain_id    TEXT    NOT NULL,
    height      INTEGER NOT NULL CHECK (height >= 0),
    used_at_ns  INTEGER NOT NULL,
    PRIMARY KEY (chain_id, height)
) STRICT;
