//! Builders on EC2: one instance per run, in a security group of its own
//! with no inbound rules, no public IP, IMDSv2 only, an encrypted gp3 root
//! volume, and the payload and report exchanged through S3 by presigned
//! URLs (so the instance needs no credentials at all).
//!
//! Launch order: S3 payload → security group → RunInstances. A failure
//! part-way removes what this launch already made; after a successful
//! launch, [`Builders::terminate`] removes all of it (instance, group,
//! objects), found again by the run tag if this process did not launch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, ResourceType, ShutdownBehavior, VolumeType,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::error::{code, is_gone, sdk_error};
use super::sdk::{Ctx, run_key, run_tags, s3_tagging, tag_spec, tags_from_ec2};
use super::userdata::{UserData, base64};
use crate::error::{CloudError, Result};
use crate::ids::{InstanceId, RunId, Tags, tags};
use crate::instances::{BuildReport, BuilderSpec, Builders, InstanceState};
use crate::wait::{WaitParams, wait_until};

/// The builder needs little: it downloads, unpacks and runs one check.
const DEFAULT_INSTANCE_TYPE: &str = "t3.small";
const PAYLOAD: &str = "payload.tar.zst";
const RESULT: &str = "result";

pub(crate) struct AwsBuilders {
    ctx: Arc<Ctx>,
    /// What this process launched, so terminate need not rediscover it.
    launched: Mutex<HashMap<InstanceId, Launched>>,
}

#[derive(Debug, Clone)]
struct Launched {
    run: RunId,
    group: Option<String>,
}

/// What one launch created so far; undone in reverse on failure.
#[derive(Default)]
struct Partial {
    objects: Vec<String>,
    group: Option<String>,
}

impl AwsBuilders {
    pub fn new(ctx: Arc<Ctx>) -> AwsBuilders {
        AwsBuilders {
            ctx,
            launched: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, id: &InstanceId, l: Launched) {
        if let Ok(mut m) = self.launched.lock() {
            m.insert(id.clone(), l);
        }
    }

    fn recall(&self, id: &InstanceId) -> Option<Launched> {
        self.launched.lock().ok()?.get(id).cloned()
    }

    fn forget(&self, id: &InstanceId) {
        if let Ok(mut m) = self.launched.lock() {
            m.remove(id);
        }
    }

    /// Uploads the payload, presigns the builder's two transfers and makes
    /// its user-data; then a security group of its own, the root volume's
    /// size, and the instance. What exists so far is in `partial`, for
    /// [`Builders::launch_builder`] to remove if a later step fails.
    async fn launch(&self, spec: &BuilderSpec, partial: &mut Partial) -> Result<InstanceId> {
        let tags = run_tags(&spec.run, &spec.tags);
        let user_data = self.stage(spec, &tags, partial).await?;
        // Where to run: the configured subnet, else the default VPC's
        // default subnet for some zone.
        let (subnet, vpc) = self.subnet(spec.settings.subnet.as_deref()).await?;
        let sg = self.builder_group(&spec.run, &vpc, &tags).await?;
        partial.group = Some(sg.clone());
        let (root_device, volume_gb) = self.root_volume(spec).await?;
        self.run_instance(
            spec,
            &tags,
            &user_data,
            &subnet,
            &sg,
            &root_device,
            volume_gb,
        )
        .await
    }

    /// The payload in S3, tagged with the run so gc can find it, and the
    /// user-data: the install script with presigned URLs to fetch the
    /// payload and to put the report.
    async fn stage(
        &self,
        spec: &BuilderSpec,
        tags: &Tags,
        partial: &mut Partial,
    ) -> Result<String> {
        let ctx = &self.ctx;
        let run = &spec.run;
        let bucket = ctx.ensure_bucket().await?;
        let script = tokio::fs::read_to_string(&spec.install_script)
            .await
            .map_err(|e| CloudError::io("read install script", &spec.install_script, e))?;
        let payload_key = run_key(run, PAYLOAD);
        let result_key = run_key(run, RESULT);
        let body = ByteStream::from_path(&spec.payload.archive)
            .await
            .map_err(|e| CloudError::Io {
                op: "read payload",
                path: spec.payload.archive.clone(),
                source: std::io::Error::other(e),
            })?;
        partial.objects.push(payload_key.clone());
        ctx.s3
            .put_object()
            .bucket(bucket)
            .key(&payload_key)
            .body(body)
            .content_type("application/zstd")
            .tagging(s3_tagging(tags))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", format!("s3://{bucket}/{payload_key}"), e))?;
        // The builder PUTs its report; delete it too if the launch fails.
        partial.objects.push(result_key.clone());
        let ttl = PresigningConfig::expires_in(ctx.presign_ttl)
            .map_err(|e| CloudError::invalid("presign lifetime", e.to_string()))?;
        let get = ctx
            .s3
            .get_object()
            .bucket(bucket)
            .key(&payload_key)
            .presigned(ttl.clone())
            .await
            .map_err(|e| sdk_error("presign GetObject", &payload_key, e))?;
        let put = ctx
            .s3
            .put_object()
            .bucket(bucket)
            .key(&result_key)
            .presigned(ttl)
            .await
            .map_err(|e| sdk_error("presign PutObject", &result_key, e))?;
        UserData {
            run: run.as_str(),
            install_script: &script,
            payload_url: get.uri(),
            result_url: put.uri(),
            sha256: &spec.payload.sha256,
        }
        .render()
    }

    /// A security group of the builder's own: no inbound rules at all (the
    /// builder is never connected to), the default all-egress rule so it
    /// can reach S3.
    async fn builder_group(&self, run: &RunId, vpc: &str, tags: &Tags) -> Result<String> {
        let ctx = &self.ctx;
        let name = format!("kiln-bake-{run}");
        ctx.ec2
            .create_security_group()
            .group_name(&name)
            // No spaces: moto's SigV4 check (IAM enforcement) recomputes
            // the signature over a re-encoded body and gets `%20` wrong.
            .description(format!("kiln-bake-builder-{run}-no-inbound-rules"))
            .vpc_id(vpc)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
            .send()
            .await
            .map_err(|e| sdk_error("CreateSecurityGroup", format!("{name} {}", ctx.place()), e))?
            .group_id
            .ok_or_else(|| api_gap("CreateSecurityGroup", "no group id"))
    }

    /// The root volume: the base's device, at least its snapshot's size
    /// (GB).
    async fn root_volume(&self, spec: &BuilderSpec) -> Result<(String, i32)> {
        let ctx = &self.ctx;
        let base = match ctx.known_base(spec.base.id.as_str()) {
            Some(b) => b,
            None => ctx
                .ec2
                .describe_images()
                .image_ids(spec.base.id.as_str())
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "DescribeImages",
                        format!("{} {}", spec.base.id, ctx.place()),
                        e,
                    )
                })?
                .images
                .unwrap_or_default()
                .into_iter()
                .next()
                .ok_or_else(|| CloudError::not_found("base image", &spec.base.id, &ctx.region))?,
        };
        let root_device = base.root_device_name().unwrap_or("/dev/xvda").to_owned();
        let base_gb = base
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(root_device.as_str()))
            .and_then(|m| m.ebs()?.volume_size())
            .unwrap_or(0);
        let volume_gb = i32::try_from(spec.settings.volume_gb)
            .unwrap_or(i32::MAX)
            .max(base_gb)
            .max(1);

        Ok((root_device, volume_gb))
    }

    /// The instance. The client token makes a retried RunInstances return
    /// the same instance instead of a second one.
    #[allow(clippy::too_many_arguments)]
    async fn run_instance(
        &self,
        spec: &BuilderSpec,
        tags: &Tags,
        user_data: &str,
        subnet: &str,
        sg: &str,
        root_device: &str,
        volume_gb: i32,
    ) -> Result<InstanceId> {
        let ctx = &self.ctx;
        let run = &spec.run;
        let instance_type = spec
            .settings
            .instance_type
            .clone()
            .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_owned());
        let out = ctx
            .ec2
            .run_instances()
            .image_id(spec.base.id.as_str())
            .instance_type(InstanceType::from(instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(client_token(run))
            .user_data(base64(user_data.as_bytes()))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Stop)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .groups(sg)
                    .associate_public_ip_address(false)
                    .delete_on_termination(true)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_type(VolumeType::Gp3)
                            .volume_size(volume_gb)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, tags))
            .tag_specifications(tag_spec(ResourceType::Volume, tags))
            .tag_specifications(tag_spec(ResourceType::NetworkInterface, tags))
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "RunInstances",
                    format!("{} ({instance_type}) {}", spec.base.id, ctx.place()),
                    e,
                )
            })?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(InstanceId::from)
            .ok_or_else(|| api_gap("RunInstances", "no instance id"))?;
        Ok(id)
    }

    /// (subnet, vpc) to launch in.
    async fn subnet(&self, configured: Option<&str>) -> Result<(String, String)> {
        let ctx = &self.ctx;
        let mut req = ctx.ec2.describe_subnets();
        let what = match configured {
            Some(s) => {
                req = req.subnet_ids(s);
                format!("subnet {s}")
            }
            None => {
                req = req.filters(
                    Filter::builder()
                        .name("default-for-az")
                        .values("true")
                        .build(),
                );
                "default subnets".to_owned()
            }
        };
        let subnets = req
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSubnets", format!("{what} {}", ctx.place()), e))?
            .subnets
            .unwrap_or_default();
        // Deterministic choice among default subnets.
        let mut found: Vec<(String, String)> = subnets
            .iter()
            .filter_map(|s| Some((s.subnet_id()?.to_owned(), s.vpc_id()?.to_owned())))
            .collect();
        found.sort();
        found.into_iter().next().ok_or_else(|| match configured {
            Some(s) => CloudError::not_found("subnet", s, &ctx.region),
            None => CloudError::invalid(
                "builder subnet",
                format!(
                    "{} has no default VPC subnet; set builder.subnet in the recipe",
                    ctx.region
                ),
            ),
        })
    }

    /// Removes what a failed launch made, best effort: the launch error is
    /// what the user needs to see; leftovers are still tagged for gc.
    async fn undo(&self, partial: Partial) {
        if let Some(sg) = &partial.group
            && let Err(e) = self.delete_group(sg).await
        {
            tracing::warn!("cleanup after a failed launch: {e}");
        }
        if let Err(e) = self.delete_objects(&partial.objects).await {
            tracing::warn!("cleanup after a failed launch: {e}");
        }
    }

    /// Deletes a security group, waiting out `DependencyViolation` while a
    /// terminated instance's network interface is still detaching.
    pub(crate) async fn delete_group(&self, sg: &str) -> Result<()> {
        let ctx = &self.ctx;
        let params = WaitParams {
            timeout: ctx.wait.timeout.min(std::time::Duration::from_secs(600)),
            ..ctx.wait
        };
        wait_until(
            params,
            &format!("security group {sg} to be deletable"),
            || async {
                match ctx.ec2.delete_security_group().group_id(sg).send().await {
                    Ok(_) => Ok(Some(())),
                    Err(e) if is_gone(&e) => Ok(Some(())),
                    Err(e) if code(&e) == Some("DependencyViolation") => Ok(None),
                    Err(e) => Err(sdk_error(
                        "DeleteSecurityGroup",
                        format!("{sg} {}", ctx.place()),
                        e,
                    )),
                }
            },
        )
        .await
    }

    /// Deletes objects one by one: DeleteObjects would need s3:DeleteObject
    /// on the whole bucket in moto's IAM checks, single deletes only on the
    /// `kiln/` keys the policy grants.
    pub(crate) async fn delete_objects(&self, keys: &[String]) -> Result<()> {
        let ctx = &self.ctx;
        let Some(bucket) = ctx.bucket.as_deref() else {
            return Ok(());
        };
        for key in keys {
            match ctx.s3.delete_object().bucket(bucket).key(key).send().await {
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(sdk_error("DeleteObject", format!("s3://{bucket}/{key}"), e)),
            }
        }
        Ok(())
    }

    /// The run an instance belongs to and its kiln security group, for an
    /// instance this process did not launch. `None` if it does not exist.
    async fn discover(&self, id: &InstanceId) -> Result<Option<Launched>> {
        let ctx = &self.ctx;
        let Some(inst) = self.describe(id).await? else {
            return Ok(None);
        };
        let tags = tags_from_ec2(inst.tags());
        let Some(run) = tags.get(tags::RUN).map(|r| RunId::from(r.as_str())) else {
            return Err(CloudError::invalid(
                "builder",
                format!("{id} has no {} tag; kiln did not launch it", tags::RUN),
            ));
        };
        // Only the group kiln made for this run, never another the instance
        // may (by someone's edit) also be in.
        let groups = ctx
            .ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", tags::RUN))
                    .values(run.as_str())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeSecurityGroups",
                    format!("of {run} {}", ctx.place()),
                    e,
                )
            })?;
        let group = groups
            .security_groups()
            .iter()
            .find_map(|g| g.group_id().map(str::to_owned));
        Ok(Some(Launched { run, group }))
    }

    async fn describe(&self, id: &InstanceId) -> Result<Option<aws_sdk_ec2::types::Instance>> {
        let ctx = &self.ctx;
        match ctx
            .ec2
            .describe_instances()
            .instance_ids(id.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id.as_str()))
                .cloned()),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(sdk_error(
                "DescribeInstances",
                format!("{id} {}", ctx.place()),
                e,
            )),
        }
    }
}

#[async_trait]
impl Builders for AwsBuilders {
    async fn launch_builder(&self, spec: &BuilderSpec) -> Result<InstanceId> {
        let mut partial = Partial::default();
        match self.launch(spec, &mut partial).await {
            Ok(id) => {
                self.remember(
                    &id,
                    Launched {
                        run: spec.run.clone(),
                        group: partial.group,
                    },
                );
                Ok(id)
            }
            Err(e) => {
                self.undo(partial).await;
                Err(e)
            }
        }
    }

    async fn state(&self, id: &InstanceId) -> Result<InstanceState> {
        let inst = self
            .describe(id)
            .await?
            .ok_or_else(|| CloudError::not_found("instance", id, &self.ctx.region))?;
        Ok(inst
            .state()
            .and_then(|s| s.name())
            .map(instance_state)
            .unwrap_or(InstanceState::Pending))
    }

    async fn result(&self, id: &InstanceId) -> Result<Option<BuildReport>> {
        let ctx = &self.ctx;
        let launched = match self.recall(id) {
            Some(l) => l,
            None => self
                .discover(id)
                .await?
                .ok_or_else(|| CloudError::not_found("instance", id, &ctx.region))?,
        };
        let bucket = ctx.bucket()?;
        let key = run_key(&launched.run, RESULT);
        let out = match ctx.s3.get_object().bucket(bucket).key(&key).send().await {
            Ok(o) => o,
            Err(e) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(sdk_error("GetObject", format!("s3://{bucket}/{key}"), e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| CloudError::Api {
                op: format!("GetObject s3://{bucket}/{key}"),
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?
            .into_bytes();
        Ok(Some(BuildReport::parse(&String::from_utf8_lossy(&bytes))))
    }

    async fn terminate(&self, id: &InstanceId) -> Result<()> {
        let ctx = &self.ctx;
        let launched = match self.recall(id) {
            Some(l) => Some(l),
            None => self.discover(id).await?,
        };
        match ctx
            .ec2
            .terminate_instances()
            .instance_ids(id.as_str())
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                return Err(sdk_error(
                    "TerminateInstances",
                    format!("{id} {}", ctx.place()),
                    e,
                ));
            }
        }
        let Some(launched) = launched else {
            return Ok(());
        };
        if let Some(sg) = &launched.group {
            // The group cannot go while the instance's interface exists.
            wait_until(ctx.wait, &format!("builder {id} to terminate"), || async {
                Ok(match self.describe(id).await? {
                    None => Some(()),
                    Some(i) => (i.state().and_then(|s| s.name())
                        == Some(&InstanceStateName::Terminated))
                    .then_some(()),
                })
            })
            .await?;
            self.delete_group(sg).await?;
        }
        self.delete_objects(&[
            run_key(&launched.run, PAYLOAD),
            run_key(&launched.run, RESULT),
        ])
        .await?;
        self.forget(id);
        Ok(())
    }
}

pub(crate) fn instance_state(s: &InstanceStateName) -> InstanceState {
    match s {
        InstanceStateName::Pending => InstanceState::Pending,
        InstanceStateName::Running => InstanceState::Running,
        InstanceStateName::Stopping => InstanceState::Stopping,
        InstanceStateName::Stopped => InstanceState::Stopped,
        InstanceStateName::ShuttingDown => InstanceState::ShuttingDown,
        InstanceStateName::Terminated => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

/// EC2 client tokens are at most 64 ASCII characters.
fn client_token(run: &RunId) -> String {
    let t: String = format!("kiln-{run}")
        .chars()
        .filter(char::is_ascii)
        .collect();
    t.chars().take(64).collect()
}

fn api_gap(op: &str, what: &str) -> CloudError {
    CloudError::Api {
        op: op.to_owned(),
        message: format!("the answer had {what}"),
        source: None,
    }
}
