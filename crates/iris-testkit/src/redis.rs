//! A Redis Cluster for tests (filled in by the Redis bus work).
