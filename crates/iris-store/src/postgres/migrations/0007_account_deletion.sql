-- Iris schema: account deletion. A row marks an account whose deletion started and has not
-- finished (on the account's shard, which is its phone's shard): registration of the phone is
-- refused while it exists, and a restarted server finishes every deletion listed here. The row
-- is deleted last, once everything else of the account is gone.
CREATE TABLE account_erasures (
    account       bigint PRIMARY KEY,
    phone         text   NOT NULL UNIQUE,
    started_at_ms bigint NOT NULL
);
