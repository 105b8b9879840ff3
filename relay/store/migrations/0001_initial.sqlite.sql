-- 0001 initial: chains, their light-client state, verified consensus states, misbehaviour.
-- Blobs are opaque to the store (the engine serialises its own states); the indexed columns
-- are what the relay looks up by. Times are integer nanoseconds since the Unix epoch.
-- Tables to come as later migrations (same numbers in every dialect): audit log (issue 7),
-- admin actions / signed proposals (issue 5), per-chain sync leases with fencing tokens
-- (issue 9; the fencing token is checked like client_states.revision).

CREATE TABLE chains (
    chain_id       TEXT    PRIMARY KEY,
    domain         TEXT    NOT NULL,
    client_type    TEXT    NOT NULL CHECK (client_type IN ('tendermint', 'tlog')),
    descriptor     BLOB    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'frozen', 'expired')),
    status_reason  TEXT    NOT NULL DEFAULT '',
    anchor_height  INTEGER NOT NULL CHECK (anchor_height >= 0),
    created_at_ns  INTEGER NOT NULL,
    updated_at_ns  INTEGER NOT NULL
) STRICT;

-- One row per chain; revision grows by one with every write and guards against a writer
-- working from a stale read.
CREATE TABLE client_states (
    chain_id       TEXT    PRIMARY KEY REFERENCES chains (chain_id),
    state          BLOB    NOT NULL,
    latest_height  INTEGER NOT NULL CHECK (latest_height >= 0),
    revision       INTEGER NOT NULL CHECK (revision >= 1),
    updated_at_ns  INTEGER NOT NULL
) STRICT;

-- trusted_from is the height this state was verified from (its parent on the trust path);
-- NULL only for the anchor. The store keeps every parent of a stored state.
CREATE TABLE consensus_states (
    chain_id              TEXT    NOT NULL REFERENCES chains (chain_id),
    height                INTEGER NOT NULL CHECK (height >= 0),
    time_ns               INTEGER NOT NULL,
    root                  BLOB    NOT NULL,
    header_hash           BLOB    NOT NULL,
    next_validators_hash  BLOB,
    light_block           BLOB    NOT NULL,
    trusted_from          INTEGER CHECK (trusted_from IS NULL OR trusted_from <> height),
    created_at_ns         INTEGER NOT NULL,
    PRIMARY KEY (chain_id, height)
) STRICT;

CREATE TABLE misbehaviour (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id        TEXT    NOT NULL REFERENCES chains (chain_id),
    height          INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    evidence        BLOB    NOT NULL,
    detected_at_ns  INTEGER NOT NULL
) STRICT;

CREATE INDEX misbehaviour_by_chain ON misbehaviour (chain_id, id);
