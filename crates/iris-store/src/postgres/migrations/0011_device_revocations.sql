-- Iris schema: revocations whose server-side follow-ups (inbox, push target, keys, notices) are
-- not confirmed done, written in the revocation's own transaction and deleted once they are;
-- the server runs what a crash or a failure cut short. announce_by: who revoked it, for the
-- DeviceChange notice (NULL: nobody is told, as after a re-registration or an erasure).
CREATE TABLE device_revocations (
    account       bigint  NOT NULL,
    device        integer NOT NULL,
    revoked_at_ms bigint  NOT NULL,
    announce_by   integer,
    PRIMARY KEY (account, device)
);
CREATE INDEX device_revocations_by_time ON device_revocations (revoked_at_ms);
