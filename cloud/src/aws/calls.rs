//! Counting API calls: an SDK interceptor shared by every client of one
//! [`super::connect`], so `bake --json` can report what a bake cost and the
//! README can compare it with Packer. Presigned URLs are not calls (they are
//! signed locally); retries count once per attempt, which is what the bill
//! and the rate limits see; a request that never got an answer (connection
//! refused) is not counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Calls made so far, keyed `Service.Operation` (e.g. `EC2.RunInstances`).
#[derive(Debug, Clone, Default)]
pub struct ApiCalls(Arc<Mutex<BTreeMap<String, u64>>>);

impl ApiCalls {
    /// A copy of the counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// How many times one operation (`RunInstances`, with or without the
    /// service prefix) was called.
    pub fn count(&self, op: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| k.as_str() == op || k.rsplit('.').next() == Some(op))
            .map(|(_, v)| *v)
            .sum()
    }

    fn add(&self, key: String) {
        // A poisoned lock only means a panic elsewhere; counting is
        // best-effort and must never fail a call.
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }
}

impl Intercept for ApiCalls {
    fn name(&self) -> &'static str {
        "kiln-api-calls"
    }

    // After transmit, not before: presigning runs the pipeline up to just
    // before transmit (and its interceptors) without sending anything.
    fn read_after_transmit(
        &self,
        _ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = match cfg.load::<Metadata>() {
            Some(m) => format!("{}.{}", m.service(), m.name()),
            None => "unknown".to_owned(),
        };
        self.add(key);
        Ok(())
    }
}
