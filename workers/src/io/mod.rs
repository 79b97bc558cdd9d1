//! One connection module per external system the stages talk to, plus the
//! Kafka wire format.

pub mod cassandra;
pub mod codec;
pub mod kafka;
pub mod postgres;
