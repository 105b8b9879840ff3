-- 0001 initial (PostgreSQL dialect of 0001_initial.sqlite.sql): chains, their light-client
-- state, verified consensus states, misbehaviour. Blobs are opaque to the store; times are
-- integer nanoseconds since the Unix epoch (BIGINT, like SQLite's 64-bit INTEGER).

CREATE TABLE chains (
    chain_id       TEXT    PRIMARY KEY,
    domain         TEXT    NOT NULL,
    client_type    TEXT    NOT NULL CHECK (client_type IN ('tendermint', 'tlog')),
    descriptor     BYTEA   NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'frozen', 'expired')),
    status_reason  TEXT    NOT NULL DEFAULT '',
    anchor_height  BIGINT  NOT NULL CHECK (anchor_height >= 0),
    created_at_ns  BIGINT  NOT NULL,
    updated_at_ns  BIGINT  NOT NULL
);

-- One row per chain; revision grows by one with every write and guards against a writer
-- working from a stale read.
CREATE TABLE client_states (
    chain_id       TEXT    PRIMARY KEY REFERENCES chains (chain_id),
    state          BYTEA   NOT NULL,
    latest_height  BIGINT  NOT NULL CHECK (latest_height >= 0),
    revision       BIGINT  NOT NULL CHECK (revision >= 1),
    updated_at_ns  BIGINT  NOT NULL
);

-- trusted_from is the height this state was verified from (its parent on the trust path);
-- NULL only for the anchor. The store keeps every parent of a stored state.
CREATE TABLE consensus_states (
    chain_id              TEXT    NOT NULL REFERENCES chains (chain_id),
    height                BIGINT  NOT NULL CHECK (height >= 0),
    time_ns               BIGINT  NOT NULL,
    root                  BYTEA   NOT NULL,
    header_hash           BYTEA   NOT NULL,
    next_validators_hash  BYTEA,
    light_block           BYTEA   NOT NULL,
    trusted_from          BIGINT  CHECK (trusted_from IS NULL OR trusted_from <> height),
    created_at_ns         BIGINT  NOT NULL,
    PRIMARY KEY (chain_id, height)
);

CREATE TABLE misbehaviour (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id        TEXT    NOT NULL REFERENCES chains (chain_id),
    height          BIGINT  NOT NULL,
    kind            TEXT    NOT NULL,
    evidence        BYTEA   NOT NULL,
    detected_at_ns  BIGINT  NOT NULL
);

CREATE INDEX misbehaviour_by_chain ON misbehaviour (chain_id, id);
