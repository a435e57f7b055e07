//! What the moto-backed modules share: fast polling, a connection to a
//! moto server, and a census of what exists there.

use std::time::Duration;

use cloud::aws::{ApiCalls, AwsOptions};
use cloud::{Cloud, WaitParams};
use motokit::{Census, Moto, TEST_KEY};

/// Polls fast: moto answers at once, and the emulator within ~100 ms.
pub const FAST: WaitParams = WaitParams {
    timeout: Duration::from_secs(120),
    interval: Duration::from_millis(50),
    backoff: 1.5,
    max_interval: Duration::from_millis(500),
};

/// The aws backend on `moto` as the user `key`/`secret`, with payloads in
/// `bucket` (created when `create_bucket`), retries off.
pub async fn connect(
    moto: &Moto,
    bucket: &str,
    (key, secret): (&str, &str),
    create_bucket: bool,
) -> (Cloud, ApiCalls) {
    cloud::aws::connect(AwsOptions {
        region: Some(motokit::REGION.into()),
        endpoint_url: Some(moto.endpoint()),
        static_credentials: Some((key.into(), secret.into())),
        bucket: Some(bucket.into()),
        create_bucket,
        retries: false,
        wait: FAST,
        ..AwsOptions::default()
    })
    .await
    .expect("connect to moto")
}

/// Everything kiln could leave behind on `moto`, payloads in `bucket`.
pub async fn census(moto: &Moto, bucket: &str) -> Census {
    Census::take(
        &moto.ec2(TEST_KEY, TEST_KEY).await,
        &moto.s3(TEST_KEY, TEST_KEY).await,
        bucket,
    )
    .await
}
