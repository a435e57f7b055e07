//! SDK configuration and the state every aws trait impl shares: one client
//! per service, the region, the bucket, the API call counter, and what is
//! immutable once read (launch-template versions, target-group ports).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::types::{Image, ResourceType, Tag, TagSpecification};
use tokio::sync::OnceCell;

use super::calls::ApiCalls;
use super::error::{code, sdk_error};
use super::{AwsOptions, KEY_PREFIX};
use crate::error::{CloudError, Result};
use crate::ids::{Region, RunId, Tags};
use crate::wait::WaitParams;

pub(crate) struct Ctx {
    pub region: Region,
    pub sdk: SdkConfig,
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// For `--alarm`: alarms that fail a roll.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub calls: ApiCalls,
    pub bucket: Option<String>,
    pub create_bucket: bool,
    pub wait: WaitParams,
    pub presign_ttl: Duration,
    /// Set once the bucket is known to exist (checked at most once per
    /// process).
    bucket_ready: OnceCell<()>,
    /// Base images as resolve_base saw them, so launching a builder on one
    /// needs no second DescribeImages for its root device.
    bases: Mutex<HashMap<String, Image>>,
    /// Launch-template versions read so far, by (template id, number);
    /// `None`: an older version that was deleted. A version never changes
    /// once made, so each is read once.
    #[allow(clippy::type_complexity)]
    pub versions: Mutex<HashMap<(String, u64), Option<aws_sdk_ec2::types::LaunchTemplateVersion>>>,
    /// Target-group ports by ARN (ELBv2 cannot change a target group's
    /// port), for instance addresses.
    pub tg_ports: Mutex<HashMap<String, u16>>,
    /// Since when this process sees each target's current health, by
    /// (target group, instance): ELBv2 does not say.
    pub health_since: Mutex<HashMap<(String, String), (String, u64)>>,
    /// Lease releases still running in the background, by group, awaited
    /// before this process takes that group's lease again.
    pub releases: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Ctx {
    pub async fn load(opts: AwsOptions) -> Result<Ctx> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            // Bounded everything: a hung connection must end in an error
            // naming the call, never in a bake that waits forever.
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(120))
                .operation_timeout(Duration::from_secs(300))
                .build(),
        );
        if let Some(r) = &opts.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(url) = &opts.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((id, secret)) = &opts.static_credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "kiln-static",
            ));
        }
        if !opts.retries {
            loader = loader.retry_config(RetryConfig::disabled());
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| Region::new(r.as_ref()))
            .ok_or_else(|| {
                CloudError::invalid(
                    "aws region",
                    "none configured: set AWS_REGION (or a profile with a region)",
                )
            })?;
        let calls = ApiCalls::default();
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        // Emulators (moto) and S3-compatible endpoints are not reachable by
        // virtual-hosted bucket names.
        let path_style = sdk.endpoint_url().is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(path_style)
                .interceptor(calls.clone())
                .build(),
        );
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        let autoscaling = aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        Ok(Ctx {
            region,
            sdk,
            ec2,
            s3,
            ssm,
            autoscaling,
            elb,
            cloudwatch,
            calls,
            bucket: opts.bucket,
            create_bucket: opts.create_bucket,
            wait: opts.wait,
            presign_ttl: opts.presign_ttl,
            bucket_ready: OnceCell::new(),
            bases: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            tg_ports: Mutex::new(HashMap::new()),
            health_since: Mutex::new(HashMap::new()),
            releases: Mutex::new(HashMap::new()),
        })
    }

    pub fn remember_base(&self, image: Image) {
        if let (Some(id), Ok(mut m)) = (image.image_id().map(str::to_owned), self.bases.lock()) {
            m.insert(id, image);
        }
    }

    pub fn known_base(&self, id: &str) -> Option<Image> {
        self.bases.lock().ok()?.get(id).cloned()
    }

    /// "in us-east-1", for error messages.
    pub fn place(&self) -> String {
        format!("in {}", self.region)
    }

    /// An EC2 client for another region (CopyImage runs in the destination).
    pub fn ec2_in(&self, region: &Region) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&self.sdk)
                .region(aws_sdk_ec2::config::Region::new(region.0.clone()))
                .interceptor(self.calls.clone())
                .build(),
        )
    }

    /// The configured bucket, or a bad-input error saying how to set one.
    pub fn bucket(&self) -> Result<&str> {
        self.bucket.as_deref().ok_or_else(|| {
            CloudError::invalid(
                "aws bucket",
                "the aws backend needs an S3 bucket for payloads and manifests \
                 (--aws-bucket or KILN_AWS_BUCKET)",
            )
        })
    }

    /// Checks the bucket exists, creating it if configured to.
    pub async fn ensure_bucket(&self) -> Result<&str> {
        let bucket = self.bucket()?;
        self.bucket_ready
            .get_or_try_init(|| async {
                // ListObjectsV2 rather than HeadBucket: it needs only
                // s3:ListBucket, which gc needs anyway.
                let probe = self
                    .s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(KEY_PREFIX)
                    .max_keys(1)
                    .send()
                    .await;
                match probe {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("NoSuchBucket") && self.create_bucket => {
                        let mut req = self.s3.create_bucket().bucket(bucket);
                        // us-east-1 refuses an explicit location constraint.
                        if self.region.as_str() != "us-east-1" {
                            req = req.create_bucket_configuration(
                                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                                    .location_constraint(
                                        aws_sdk_s3::types::BucketLocationConstraint::from(
                                            self.region.as_str(),
                                        ),
                                    )
                                    .build(),
                            );
                        }
                        req.send().await.map_err(|e| {
                            sdk_error("CreateBucket", format!("{bucket} {}", self.place()), e)
                        })?;
                        Ok(())
                    }
                    Err(e) if code(&e) == Some("NoSuchBucket") => Err(CloudError::not_found(
                        "S3 bucket",
                        bucket,
                        format!("{} (create it, or pass --aws-create-bucket)", self.region),
                    )),
                    Err(e) => Err(sdk_error(
                        "ListObjectsV2",
                        format!("s3://{bucket}/{KEY_PREFIX} {}", self.place()),
                        e,
                    )),
                }
            })
            .await?;
        Ok(bucket)
    }
}

/// Key of a run's scratch object (`payload.tar.zst`, `result`).
/// Pages a Describe call through to the end: `page(token)` sends one
/// request and answers its items and the next token. Bounded (a token
/// that repeats, or more than [`MAX_PAGES`] pages, ends it with what was
/// read and a warning), so a misbehaving endpoint cannot loop forever.
pub async fn all_pages<T, E, F, Fut>(what: &str, mut page: F) -> std::result::Result<Vec<T>, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(Vec<T>, Option<String>), E>>,
{
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (items, next) = page(token.clone()).await?;
        all.extend(items);
        match next.filter(|t| !t.is_empty()) {
            Some(t) if Some(&t) == token.as_ref() => {
                tracing::warn!("{what}: the same page token twice; stopping");
                return Ok(all);
            }
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
    tracing::warn!("{what}: more than {MAX_PAGES} pages; stopping");
    Ok(all)
}

/// See [`all_pages`].
pub const MAX_PAGES: usize = 1000;

pub fn run_key(run: &RunId, name: &str) -> String {
    format!("{KEY_PREFIX}runs/{run}/{name}")
}

/// Key of an image's manifest, named by digest so it is known before the
/// image exists and can be tagged onto it at creation.
pub fn manifest_key(digest: &str) -> String {
    format!("{KEY_PREFIX}images/{digest}/manifest.json")
}

/// The tags every resource of a run gets: the caller's, plus the run id and
/// creation time (which `gc` uses as the resource's age).
pub fn run_tags(run: &RunId, extra: &Tags) -> Tags {
    let mut t = extra.clone();
    t.insert(crate::tags::RUN.into(), run.to_string());
    t.entry(crate::tags::CREATED.into())
        .or_insert_with(|| crate::time::rfc3339(crate::time::now_unix()));
    t
}

pub fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn tag_spec(kind: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

pub fn tags_from_ec2(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

/// S3's `x-amz-tagging` header value: URL-encoded `k=v&k=v`.
pub fn s3_tagging(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986: everything but the unreserved characters is escaped.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_is_url_encoded() {
        let mut t = Tags::new();
        t.insert("kiln:bake".into(), "run-1 x".into());
        assert_eq!(s3_tagging(&t), "kiln%3Abake=run-1%20x");
    }
}
