-- 0005 lease token (issue 9): which sync lease term wrote each consensus state. A fenced
-- sync write stores its lease token; an unfenced write (registration, re-anchoring,
-- on-demand verification by any replica) stores NULL. With the lease table's history this
-- shows that a paused former owner wrote nothing after its lease was lost.

ALTER TABLE consensus_states ADD COLUMN lease_token INTEGER CHECK (lease_token IS NULL OR lease_token >= 1);
