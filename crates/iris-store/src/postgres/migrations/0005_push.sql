-- Push targets (issue 19): one per device, on the account's shard, replaced on re-registration,
-- deleted on revocation, on a provider's invalid-token answer and with the account.
CREATE TABLE push_targets (
    account       int8 NOT NULL,
    device        int4 NOT NULL,
    provider      text NOT NULL,
    token         text NOT NULL,
    updated_at_ms int8 NOT NULL,
    PRIMARY KEY (account, device)
);
