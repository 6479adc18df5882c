-- Disappearing messages: the expiry of inbox entries and message-index rows written while a
-- conversation's timer is on (NULL: only the retention TTL applies), partial indexes so the
-- periodic bounded sweep finds what is due without a scan, and the timers themselves.
ALTER TABLE inbox ADD COLUMN expires_at_ms bigint;
CREATE INDEX inbox_expires_at ON inbox (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

ALTER TABLE message_refs ADD COLUMN expires_at_ms bigint;
CREATE INDEX message_refs_expires_at ON message_refs (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

-- One row per conversation with a timer ever set: kind 0 is a 1:1 pair (a < b, on a's shard),
-- kind 1 a group (b = 0, on the group's shard).
CREATE TABLE chat_timers (
    kind      smallint NOT NULL,
    a         bigint   NOT NULL,
    b         bigint   NOT NULL,
    seconds   integer  NOT NULL,
    set_by    bigint   NOT NULL,
    set_at_ms bigint   NOT NULL,
    PRIMARY KEY (kind, a, b)
);
