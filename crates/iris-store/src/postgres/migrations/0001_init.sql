-- Iris schema, version 1: the same on every shard; which rows a shard holds is decided by the
-- routing in postgres/shards.rs. u64 values are stored bit for bit in bigint; server message
-- ids with their top bit flipped (so they keep their order).

-- Accounts: the phone index is the unique phone column (the account lives on its phone's shard).
CREATE SEQUENCE account_seq;
CREATE TABLE accounts (
    id             bigint  PRIMARY KEY,
    phone          text    NOT NULL UNIQUE,
    created_at_ms  bigint  NOT NULL,
    next_device_id integer NOT NULL
);
CREATE TABLE devices (
    account       bigint  NOT NULL,
    device        integer NOT NULL,
    name          text    NOT NULL,
    is_primary    boolean NOT NULL,
    created_at_ms bigint  NOT NULL,
    revoked_at_ms bigint,
    PRIMARY KEY (account, device)
);
CREATE TABLE refresh_tokens (
    hash          bytea   PRIMARY KEY,
    account       bigint  NOT NULL,
    device        integer NOT NULL,
    expires_at_ms bigint  NOT NULL
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (account, device);

-- Inboxes: entries by device and seq, the cursor (acked, last) per device, dedup records per
-- sending device and client message id.
CREATE TABLE inbox (
    account        bigint  NOT NULL,
    device         integer NOT NULL,
    seq            bigint  NOT NULL,
    appended_at_ms bigint  NOT NULL,
    item           bytea   NOT NULL,
    PRIMARY KEY (account, device, seq)
);
CREATE TABLE cursors (
    account bigint  NOT NULL,
    device  integer NOT NULL,
    acked   bigint  NOT NULL DEFAULT 0,
    last    bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (account, device)
);
CREATE TABLE dedup (
    account       bigint  NOT NULL,
    device        integer NOT NULL,
    client_msg_id text    NOT NULL,
    server_msg_id bigint  NOT NULL,
    server_ts_ms  bigint  NOT NULL,
    PRIMARY KEY (account, device, client_msg_id)
);

CREATE TABLE blocks (
    blocker bigint NOT NULL,
    blocked bigint NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
CREATE TABLE contacts (
    owner   bigint NOT NULL,
    contact bigint NOT NULL,
    PRIMARY KEY (owner, contact)
);
CREATE TABLE presence_privacy (
    account bigint   PRIMARY KEY,
    code    smallint NOT NULL
);

-- Groups: one versioned row per group (members and pending joins as parallel arrays), the
-- member index and invite token on the group's shard, and the outbox of changes whose events
-- are not yet known to be appended.
CREATE SEQUENCE group_seq;
CREATE TABLE groups (
    id                     bigint     PRIMARY KEY,
    version                bigint     NOT NULL,
    name                   text       NOT NULL,
    description            text       NOT NULL,
    flags                  smallint   NOT NULL,
    created_at_ms          bigint     NOT NULL,
    member_accounts        bigint[]   NOT NULL,
    member_roles           smallint[] NOT NULL,
    member_joined_at_ms    bigint[]   NOT NULL,
    member_joined_versions bigint[]   NOT NULL,
    pending_accounts       bigint[]   NOT NULL,
    pending_requested_ms   bigint[]   NOT NULL,
    invite_token           text
);
CREATE INDEX groups_by_invite ON groups (invite_token) WHERE invite_token IS NOT NULL;
CREATE TABLE group_members (
    account  bigint NOT NULL,
    group_id bigint NOT NULL,
    PRIMARY KEY (account, group_id)
);
CREATE TABLE group_outbox (
    group_id      bigint    NOT NULL,
    version       bigint    NOT NULL,
    created_at_ms bigint    NOT NULL,
    dedup_account bigint    NOT NULL,
    dedup_device  integer   NOT NULL,
    client_msg_id text      NOT NULL,
    server_msg_id bigint    NOT NULL,
    server_ts_ms  bigint    NOT NULL,
    accounts      bigint[]  NOT NULL,
    devices       integer[] NOT NULL,
    items         bytea[]   NOT NULL,
    PRIMARY KEY (group_id, version)
);

-- Records keyed by server message id (on the message's shard).
CREATE TABLE group_payloads (
    server_msg_id bigint NOT NULL,
    group_id      bigint NOT NULL,
    payload       bytea  NOT NULL,
    PRIMARY KEY (server_msg_id, group_id)
);
CREATE TABLE group_receipts (
    server_msg_id bigint NOT NULL,
    group_id      bigint NOT NULL,
    sender        bigint NOT NULL,
    n_recipients  bigint NOT NULL,
    n_delivered   bigint NOT NULL,
    n_read        bigint NOT NULL,
    PRIMARY KEY (server_msg_id, group_id)
);
CREATE TABLE group_receipt_rows (
    server_msg_id   bigint NOT NULL,
    group_id        bigint NOT NULL,
    account         bigint NOT NULL,
    delivered_at_ms bigint NOT NULL,
    read_at_ms      bigint NOT NULL,
    PRIMARY KEY (server_msg_id, group_id, account)
);
CREATE TABLE message_refs (
    server_msg_id   bigint   PRIMARY KEY,
    sender          bigint   NOT NULL,
    kind            smallint NOT NULL, -- 0: direct (conversation_id is the peer), 1: group
    conversation_id bigint   NOT NULL,
    sent_at_ms      bigint   NOT NULL,
    deleted         boolean  NOT NULL
);
