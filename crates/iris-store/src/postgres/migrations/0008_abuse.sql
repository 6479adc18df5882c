-- Iris schema: abuse rules and user reports (issue 18 part 4). Both tables live on the shard of
-- the account they are about. A state row exists once a rule or an operator touched the
-- account: suspended pending review (only an operator lifts it), and until when its sending to
-- non-contacts and its forwarding are restricted. Reports keep what the reporter disclosed
-- (`messages`, encoded by the store) for the review; the reporter's account is set to 0 when
-- that account is deleted.
CREATE TABLE abuse_states (
    account                     bigint   PRIMARY KEY,
    suspended                   boolean  NOT NULL DEFAULT false,
    suspended_at_ms             bigint   NOT NULL DEFAULT 0,
    suspended_reason            text     NOT NULL DEFAULT '',
    sending_restricted_until_ms bigint   NOT NULL DEFAULT 0,
    forwarding_limited_until_ms bigint   NOT NULL DEFAULT 0
);

CREATE TABLE abuse_reports (
    reported         bigint NOT NULL,
    id               bigint NOT NULL,
    reporter_account bigint NOT NULL,
    reporter_device  int4   NOT NULL,
    reported_at_ms   bigint NOT NULL,
    reason           text   NOT NULL,
    messages         bytea  NOT NULL,
    PRIMARY KEY (reported, id)
);
CREATE INDEX abuse_reports_by_time ON abuse_reports (reported, reported_at_ms);
CREATE INDEX abuse_reports_by_reporter ON abuse_reports (reporter_account);
