-- Iris schema: the sweep of expired device links reads them by deadline across accounts (an
-- approved link never collected has its device revoked before the link is dropped).
CREATE INDEX pending_links_expiry ON pending_links (expires_at_ms);
