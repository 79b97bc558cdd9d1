//! taxistream data plane.
//!
//! Every stage, the local `run` included, is wired from one skeleton
//! ([`flow`]): a batch [`source`] (files, URLs, the Open Data API, the
//! PostgreSQL outbox, a Kafka topic) → a [`transform`] (validation by
//! [`validate`], event-time windows by [`window`]) → a batch [`sink`]
//! (PostgreSQL, Kafka, Cassandra, local files via [`output`]), with bad
//! records going to a dead-letter sink ([`dead_letter`]). [`stage`] holds
//! the wiring of each worker subcommand, [`io`] the clients and wire
//! codecs, and [`mod@bench`] the benchmark behind `make bench`.

pub mod bench;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod flow;
pub mod health;
pub mod io;
pub mod metrics;
pub mod output;
pub mod run;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stage;
pub mod transform;
pub mod trip;
pub mod validate;
pub mod window;
pub mod zones;
