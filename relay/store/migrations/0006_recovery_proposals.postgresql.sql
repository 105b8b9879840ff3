-- 0006 recovery proposals (PostgreSQL dialect of 0006_recovery_proposals.sqlite.sql): a
-- partner may propose recovering its own chain with a fresh trust anchor.

ALTER TABLE proposals DROP CONSTRAINT proposals_kind_check;
ALTER TABLE proposals ADD CONSTRAINT proposals_kind_check
    CHECK (kind IN ('register', 'update_endpoint', 'recover'));
