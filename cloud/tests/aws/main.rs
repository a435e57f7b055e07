//! The aws backend's integration tests, in one test binary (each binary
//! links the AWS SDK, so one binary instead of three saves gigabytes of
//! debug build and minutes of linking):
//! - `moto`: against a real moto server (one per test);
//! - `conformance`: the image/builder conformance suite on moto, with the
//!   instance emulator playing the builder;
//! - `fleet`: groups and load balancers (Auto Scaling, ELBv2) on moto: the
//!   fleet conformance checks moto can run, and aws's own;
//! - `iam`: roll's IAM policy under moto's IAM enforcement;
//! - `scripted`: what moto cannot emulate, against a scripted fake endpoint;
//! - `setup`: `roll up`/`roll down --backend aws` (`cloud::aws::setup`) on moto.
//!
//! The whole binary runs in nextest's serial `moto` group (`binary(/aws/)`).
#![cfg(feature = "aws")]

mod conformance;
mod fleet;
mod iam;
mod moto;
mod scripted;
mod setup;
mod support;
