//! The pipeline's stages, one per subcommand: PostgreSQL → Kafka → windows
//! → Cassandra. Each stage owns its I/O and offsets; the shared pieces
//! (readers, validation, window engine) live in their own modules so every
//! stage, and the local job ([`crate::run`]), computes the same thing.

pub mod aggregate;
pub mod fetch_args;
pub mod ingest;
pub mod relay;
pub mod runtime;
pub mod sink;
