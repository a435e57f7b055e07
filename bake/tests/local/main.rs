//! bake's local-backend integration tests, in one test binary (bake links
//! the AWS SDK by default, so every extra test binary costs a large link):
//! - `bake`: the real `bake` binary end to end on the local backend;
//! - `conformance`: the image/builder and the fleet conformance suites on
//!   the local backend (the fleet daemon runs inside the test process).

mod common;

mod bake;
mod conformance;
