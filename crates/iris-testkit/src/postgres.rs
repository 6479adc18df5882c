//! PostgreSQL shards for tests (filled in by the PostgreSQL engine work).
