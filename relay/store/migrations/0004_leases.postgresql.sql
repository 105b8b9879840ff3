-- 0004 leases (issue 9): per-chain sync leases with fencing tokens. One row per chain ever
-- leased; the row is never deleted (release only ends its term) so ``token`` grows strictly
-- per chain across owners. A sync write carries the token it was issued and is refused
-- unless that token is still the chain's current, unexpired one.

CREATE TABLE sync_leases (
    chain_id        TEXT    PRIMARY KEY,
    owner           TEXT    NOT NULL,
    token           BIGINT  NOT NULL CHECK (token >= 1),
    expires_at_ns   BIGINT  NOT NULL,
    acquired_at_ns  BIGINT  NOT NULL
);
