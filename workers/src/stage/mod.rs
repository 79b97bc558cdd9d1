//! The worker's stages, one per subcommand. Each stage owns its I/O and
//! offsets; the shared pieces (readers, validation, window engine) live in
//! their own modules so every stage computes the same thing.

// Backend stages (issue 4): PostgreSQL → Kafka → windows → Cassandra.
pub mod aggregate;
pub mod bench_e2e;
pub mod ingest;
pub mod relay;
pub mod runtime;
pub mod sink;

// The embedded default job (issue 3): read → validate → window in one process.
pub mod fetch_args;
pub mod run_local;
pub mod run_merge;
