-- Iris schema: profiles, registration PINs and device links waiting for the primary's approval,
-- all on their account's shard.

CREATE TABLE profiles (
    account        bigint   PRIMARY KEY,
    display_name   text     NOT NULL,
    about          text     NOT NULL,
    photo_media_id text     NOT NULL,
    privacy        smallint NOT NULL,
    updated_at_ms  bigint   NOT NULL
);

-- The Argon2id hash (PHC string) and the attempt counter of an account's registration PIN.
CREATE TABLE registration_pins (
    account         bigint  PRIMARY KEY,
    hash            text    NOT NULL,
    failed_attempts integer NOT NULL,
    locked_until_ms bigint  NOT NULL
);

-- state: 0 pending, 1 approved (device set), 2 refused.
CREATE TABLE pending_links (
    account       bigint   NOT NULL,
    code          text     NOT NULL,
    secret_hash   bytea    NOT NULL,
    device_name   text     NOT NULL,
    expires_at_ms bigint   NOT NULL,
    state         smallint NOT NULL,
    device        integer  NOT NULL,
    PRIMARY KEY (account, code)
);
