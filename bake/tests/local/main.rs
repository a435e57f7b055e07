//! bake's local-backend integration tests, in one test binary (bake links
//! the AWS SDK by default, so every extra test binary costs a large link):
//! - `bake`: the real `bake` binary end to end on the local backend;
//! - `conformance`: the image/builder and the fleet conformance suites on
//!   the local backend (the fleet daemon runs inside the test process);
//! - `logs`: the journal settings and `[logs]`' TLS forwarder on the image,
//!   checked with the real rsyslogd.

mod common;

mod bake;
mod conformance;
mod logs;
