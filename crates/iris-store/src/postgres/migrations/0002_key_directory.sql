-- The end-to-end key directory (key_directory.rs), on the device's account's shard: identity
-- keys (set once), the pool of one-time keys (a claim deletes one row, so each is handed out
-- once), the fallback key with the notice flags, and which accounts exchanged keys.
CREATE TABLE device_identities (
    account    bigint  NOT NULL,
    device     integer NOT NULL,
    curve25519 text    NOT NULL,
    ed25519    text    NOT NULL,
    signature  text    NOT NULL,
    PRIMARY KEY (account, device)
);
CREATE TABLE one_time_keys (
    account   bigint  NOT NULL,
    device    integer NOT NULL,
    key_id    text    NOT NULL,
    key       text    NOT NULL,
    signature text    NOT NULL,
    PRIMARY KEY (account, device, key_id)
);
CREATE TABLE key_state (
    account            bigint  NOT NULL,
    device             integer NOT NULL,
    low_notified       boolean NOT NULL DEFAULT false,
    fallback_notified  boolean NOT NULL DEFAULT false,
    fallback_key_id    text,
    fallback_key       text,
    fallback_signature text,
    PRIMARY KEY (account, device)
);
CREATE TABLE key_peers (
    account bigint NOT NULL,
    peer    bigint NOT NULL,
    last_ms bigint NOT NULL,
    PRIMARY KEY (account, peer)
);
