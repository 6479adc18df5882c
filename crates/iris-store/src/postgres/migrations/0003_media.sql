-- Iris schema, version 2: media metadata (the blob bytes live in an object store, never here).
-- Blobs and the references messages hold on them live on the shard of the blob's id
-- (fnv1a64 of the 32-byte id); uploads and quotas on their account's shard.

CREATE TABLE media_blobs (
    id            bytea    PRIMARY KEY,
    size_bytes    bigint   NOT NULL,
    kind          smallint NOT NULL,
    encrypted     boolean  NOT NULL,
    mime          text     NOT NULL,
    width         integer  NOT NULL,
    height        integer  NOT NULL,
    thumbnail     bytea,
    owner         bigint   NOT NULL,
    created_at_ms bigint   NOT NULL,
    touched_at_ms bigint   NOT NULL
);
CREATE INDEX media_blobs_by_touch ON media_blobs (touched_at_ms);

-- One row per (blob, message) reference; server message ids with their top bit flipped. The
-- foreign key makes "delete an unreferenced blob" and "reference a stored blob" exclusive.
CREATE TABLE media_refs (
    media_id      bytea  NOT NULL REFERENCES media_blobs (id),
    server_msg_id bigint NOT NULL,
    account       bigint NOT NULL,
    PRIMARY KEY (media_id, server_msg_id)
);
CREATE INDEX media_refs_by_msg ON media_refs (server_msg_id);
CREATE INDEX media_refs_by_account ON media_refs (account);

CREATE TABLE media_uploads (
    id              bytea    PRIMARY KEY,
    account         bigint   NOT NULL,
    idempotency_key text     NOT NULL,
    kind            smallint NOT NULL,
    size_bytes      bigint   NOT NULL,
    sha256          bytea    NOT NULL,
    encrypted       boolean  NOT NULL,
    mime            text     NOT NULL,
    "offset"        bigint   NOT NULL,
    created_at_ms   bigint   NOT NULL,
    media_id        bytea,
    UNIQUE (account, idempotency_key)
);
CREATE INDEX media_uploads_by_time ON media_uploads (created_at_ms);

CREATE TABLE media_quota (
    account         bigint NOT NULL,
    window_start_ms bigint NOT NULL,
    bytes           bigint NOT NULL,
    PRIMARY KEY (account, window_start_ms)
);
