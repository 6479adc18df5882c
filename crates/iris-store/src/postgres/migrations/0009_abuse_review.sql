-- Iris schema: the operators' review queue (suspended accounts and accounts reported recently,
-- newest first) reads both tables by time rather than by account.
CREATE INDEX abuse_states_suspended ON abuse_states (suspended_at_ms) WHERE suspended;
CREATE INDEX abuse_reports_recent ON abuse_reports (reported_at_ms);
