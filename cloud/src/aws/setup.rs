//! `roll up --backend aws` / `roll down --backend aws`: a service's AWS
//! pieces for users without Terraform, made the way `motokit::Moto::fleet`
//! (and a careful Terraform module) makes them, and removed again.
//!
//! **What `up` makes** (each tagged at creation with `kiln:roll-up=<group>`,
//! `kiln:roll-group=<group>` and `kiln:roll-up-part=<part>`):
//! - `balancer` security group `<group>-balancer`: the listener port from
//!   0.0.0.0/0 (internet-facing) or the VPC's CIDR (internal). Not made
//!   when an existing ALB is given: its own security groups are used.
//! - `instances` security group `<group>-instances`: the service port
//!   from the balancer's security group(s) only; nothing else in.
//! - `template`: launch template `<group>`, version 1 = the image, the
//!   instance type, one network interface (the instances' security group,
//!   no public IP), IMDSv2 required with hop limit 1, an encrypted gp3 root
//!   volume on the image's root device, instance and volume tags.
//! - target groups `a` and `b` (ELBv2 names, see [`elb_name`]): HTTP on the
//!   service port, health check on the path given (`/ready`), matcher 200,
//!   the deregistration delay attribute.
//! - `balancer`: an internal ALB (internet-facing on request) in the
//!   balancer subnets, unless an existing one is given.
//! - `listener`: HTTP (or HTTPS with a certificate and a TLS policy) whose
//!   default action is a weighted forward, a at 1 and b at 0: the
//!   blue/green pair as `lb.rs` reads it.
//! - `group`: the Auto Scaling group `<group>`, pinned to template version
//!   "1" (numeric), in the instance subnets, in target group a, ELB health
//!   checks with a grace period, min = max = desired = size; also tagged
//!   `kiln:roll-created=true` (roll made it, so roll may delete it).
//!
//! **Idempotent and resumable.** Every piece is looked up first, by tag
//! (security groups, launch templates, groups) or by name and then its
//! tags (ELBv2 names are unique per region), and made only when missing;
//! a piece with our name but without our tag is someone else's and is
//! refused, never adopted. Client tokens where the API takes one (launch
//! template). So a rerun after a failure or `kill -9` creates exactly
//! what is missing, and a second run with the same spec makes no call
//! that changes anything. A spec that differs from what exists is not
//! applied: [`Outcome::Differs`] lists the differences and what changes
//! each (`roll out`, `roll scale`, or `roll down` first).
//!
//! **What `down` removes**: exactly what carries `kiln:roll-up=<group>`,
//! plus blue/green twins roll made for the group (`kiln:roll-created=true`
//! and `kiln:roll-group=<group>`), in dependency order: groups (scaled to
//! 0, members deregistered — moto leaves them registered —, force-deleted,
//! waited for), listener, the ALB if ours (waited for), target groups,
//! launch template, security groups (instances' first: it refers to the
//! balancer's; DependencyViolation retried while ENIs go away). A group
//! `<group>` without our tag is refused before anything is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification};
use aws_sdk_ec2::types::{
    Filter, InstanceType, IpPermission, IpRange, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, SecurityGroup,
    UserIdGroupPair, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, ForwardActionConfig, Listener, LoadBalancer,
    LoadBalancerSchemeEnum, LoadBalancerTypeEnum, Matcher, ProtocolEnum, TargetGroup,
    TargetGroupAttribute, TargetGroupTuple, TargetTypeEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{call_error, code, is_gone, is_missing, sdk_error};
use super::groups::{ROLL_CREATED, asg_tags};
use super::sdk::{Ctx, ec2_tags, tag_spec};
use crate::error::{CloudError, Result};
use crate::ids::{GroupName, ImageId, Tags, tags};
use crate::lb::HealthCheck;
use crate::wait::wait_until;

/// On everything `roll up` makes: the group it was made for.
pub const ROLL_UP: &str = "kiln:roll-up";
/// Which piece it is (`balancer-sg`, `instances-sg`, `template`, `tg-a`,
/// `tg-b`, `balancer`, `listener`, `group`).
pub const PART: &str = "kiln:roll-up-part";
/// The default TLS policy of an HTTPS listener (TLS 1.3 and 1.2 only).
pub const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/// Target-group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
const DELETING: &str = "Delete in progress";

/// What `roll up --backend aws` asks for (already resolved from flags and
/// roll.toml; checked again here by [`ServiceSpec::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub group: GroupName,
    pub image: ImageId,
    pub size: u32,
    /// Default: the subnets' VPC.
    pub vpc: Option<String>,
    /// Private subnets for the instances.
    pub subnets: Vec<String>,
    /// The balancer's subnets (empty: `subnets`).
    pub lb_subnets: Vec<String>,
    /// An existing ALB (ARN) to put the listener on; `None`: make one.
    pub load_balancer: Option<String>,
    pub internet_facing: bool,
    /// Listener port.
    pub port: u16,
    /// Instance (target group) port.
    pub service_port: u16,
    pub instance_type: String,
    /// HTTPS with this certificate (ACM ARN); `None`: HTTP.
    pub certificate_arn: Option<String>,
    pub tls_policy: String,
    pub health_check: HealthCheck,
    pub deregistration_delay_s: u32,
    pub grace_period_s: u32,
}

impl ServiceSpec {
    /// Checks the spec against ELBv2's and Auto Scaling's limits before
    /// any call.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, why: String| Err(CloudError::invalid(what.to_owned(), why));
        if self.subnets.is_empty() {
            return bad(
                "subnets",
                "name the private subnets of the instances".into(),
            );
        }
        for s in self.subnets.iter().chain(&self.lb_subnets) {
            if !s.starts_with("subnet-") {
                return bad("subnet", format!("{s:?} is not a subnet id (subnet-…)"));
            }
        }
        if self.port == 0 || self.service_port == 0 {
            return bad("port", "ports are 1..=65535".into());
        }
        if self.size == 0 || self.size > 1000 {
            return bad("size", format!("{}: 1..=1000 instances", self.size));
        }
        let h = &self.health_check;
        let (interval, timeout) = (h.interval_ms / 1000, h.timeout_ms / 1000);
        if !(5..=300).contains(&interval) || !h.interval_ms.is_multiple_of(1000) {
            return bad(
                "health check interval",
                format!("{} ms: ELBv2 takes whole seconds, 5 to 300", h.interval_ms),
            );
        }
        if !(2..=120).contains(&timeout)
            || !h.timeout_ms.is_multiple_of(1000)
            || timeout >= interval
        {
            return bad(
                "health check timeout",
                format!(
                    "{} ms: ELBv2 takes whole seconds, 2 to 120, less than the interval",
                    h.timeout_ms
                ),
            );
        }
        for (what, n) in [
            ("healthy threshold", h.healthy_threshold),
            ("unhealthy threshold", h.unhealthy_threshold),
        ] {
            if !(2..=10).contains(&n) {
                return bad(what, format!("{n}: ELBv2 takes 2 to 10"));
            }
        }
        if !h.path.starts_with('/') || h.path.len() > 1024 {
            return bad(
                "health check path",
                format!("{:?}: starts with /, at most 1024 characters", h.path),
            );
        }
        if self.deregistration_delay_s > 3600 {
            return bad(
                "deregistration delay",
                format!("{} s: at most 3600", self.deregistration_delay_s),
            );
        }
        if self.grace_period_s > 7200 {
            return bad(
                "health check grace period",
                format!("{} s: at most 7200", self.grace_period_s),
            );
        }
        if self.instance_type.is_empty() || !self.instance_type.contains('.') {
            return bad(
                "instance type",
                format!("{:?}: like t3.small", self.instance_type),
            );
        }
        if let Some(lb) = &self.load_balancer
            && !lb.starts_with("arn:")
        {
            return bad("load balancer", format!("{lb:?} is not an ARN"));
        }
        Ok(())
    }

    fn lb_subnets(&self) -> &[String] {
        if self.lb_subnets.is_empty() {
            &self.subnets
        } else {
            &self.lb_subnets
        }
    }

    fn protocol(&self) -> ProtocolEnum {
        if self.certificate_arn.is_some() {
            ProtocolEnum::Https
        } else {
            ProtocolEnum::Http
        }
    }
}

/// What changes a difference between the spec and what exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// `roll out --image`.
    RollOut,
    /// `roll scale --size`.
    RollScale,
    /// Nothing in place: `roll down`, then `roll up` again.
    Recreate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub what: String,
    pub have: String,
    pub want: String,
    pub change: Change,
}

/// What `up` made (or found): everything `roll out` needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub group: String,
    pub image: String,
    pub size: u32,
    pub region: String,
    pub vpc: String,
    pub subnets: Vec<String>,
    pub load_balancer: String,
    /// Whether `roll up` made the ALB (and `roll down` removes it).
    pub load_balancer_owned: bool,
    pub dns_name: String,
    /// `http://dns:port` or `https://…`.
    pub url: String,
    pub listener: String,
    /// The listener's target groups: a (live, the group's) and b (idle).
    pub target_groups: Vec<String>,
    pub launch_template: String,
    pub instance_security_group: String,
    /// The balancer's security groups.
    pub balancer_security_groups: Vec<String>,
    /// What this run created (empty: it all existed).
    pub created: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Ready(Box<ServiceInfo>),
    /// Nothing was changed: what exists differs from the spec.
    Differs(Vec<Difference>),
}

/// What `down` removed (empty: nothing was there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub removed: Vec<String>,
}

/// The aws service setup: clients of its own ([`Setup::connect`], like
/// [`super::connect`]) with their own call counter.
#[derive(Clone)]
pub struct Setup {
    ctx: Arc<Ctx>,
}

/// An ELBv2 name (load balancer, target group) for `group` + `suffix`:
/// at most 32 letters, digits and hyphens, no `--`, no hyphen at either
/// end, not starting with `internal-`. A group name that needs changes to
/// fit gets a short hash of the original, so two groups never share one.
pub fn elb_name(group: &str, suffix: &str) -> String {
    let mut base = String::new();
    for c in group.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (base.is_empty() || base.ends_with('-')) {
            continue;
        }
        base.push(c);
    }
    let base = base.trim_end_matches('-').to_owned();
    let max = 32 - suffix.len();
    let fits = base == group && base.len() <= max && !base.starts_with("internal-");
    let base = if fits {
        base
    } else {
        let hex: String = Sha256::digest(group.as_bytes())
            .iter()
            .take(3)
            .map(|b| format!("{b:02x}"))
            .collect();
        let keep = max.saturating_sub(hex.len() + 1);
        let mut head: String = base.chars().take(keep).collect();
        while head.ends_with('-') {
            head.pop();
        }
        if head.is_empty() || head.starts_with("internal") {
            format!(
                "k{}-{hex}",
                head.get(..keep.saturating_sub(1)).unwrap_or("")
            )
            .replace("--", "-")
        } else {
            format!("{head}-{hex}")
        }
    };
    format!("{base}{suffix}")
}

/// Security group names: `<group>-<what>` (EC2 refuses names starting
/// with `sg-`).
fn sg_name(group: &GroupName, what: &str) -> String {
    let n = format!("{group}-{what}");
    if n.starts_with("sg-") {
        format!("kiln-{n}")
    } else {
        n
    }
}

fn token(parts: &[&str]) -> String {
    let hex: String = Sha256::digest(parts.join(" ").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("kiln-{}", &hex[..40])
}

fn ours(tags: &Tags, group: &GroupName) -> bool {
    tags.get(ROLL_UP).map(String::as_str) == Some(group.as_str())
}

fn part_tags(group: &GroupName, part: &str) -> Tags {
    let mut t = Tags::new();
    t.insert(ROLL_UP.into(), group.to_string());
    t.insert(tags::ROLL_GROUP.into(), group.to_string());
    t.insert(PART.into(), part.into());
    t
}

fn elb_tags(t: &Tags) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    t.iter()
        .map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

fn asg_tag_map(g: &AutoScalingGroup) -> Tags {
    g.tags()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

fn ec2_tag_map(t: &[aws_sdk_ec2::types::Tag]) -> Tags {
    super::sdk::tags_from_ec2(t)
}

/// The default action `up` gives the listener: a at weight 1, b at 0.
pub fn weighted_forward(a: &str, b: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(a)
                        .weight(1)
                        .build(),
                )
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(b)
                        .weight(0)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// Version 1 of the launch template (see the module doc).
pub fn launch_data(
    spec: &ServiceSpec,
    root_device: &str,
    root_gb: i32,
    instance_sg: &str,
) -> RequestLaunchTemplateData {
    let t = part_tags(&spec.group, "instance");
    RequestLaunchTemplateData::builder()
        .image_id(spec.image.as_str())
        .instance_type(InstanceType::from(spec.instance_type.as_str()))
        .network_interfaces(
            LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .associate_public_ip_address(false)
                .delete_on_termination(true)
                .groups(instance_sg)
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(1)
                .build(),
        )
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(root_device)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(root_gb)
                        .volume_type(VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(ec2_tags(&t)))
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(ec2_tags(&t)))
                .build(),
        )
        .build()
}

/// The network the spec names.
struct Network {
    vpc: String,
    cidr: String,
}

impl Setup {
    /// Loads the SDK configuration as [`super::connect`] does (no API
    /// call yet).
    pub async fn connect(opts: super::AwsOptions) -> Result<Setup> {
        Ok(Setup {
            ctx: Arc::new(Ctx::load(opts).await?),
        })
    }

    /// The calls this setup's clients made so far.
    pub fn calls(&self) -> super::ApiCalls {
        self.ctx.calls.clone()
    }

    fn place(&self) -> String {
        self.ctx.place()
    }

    // ---- lookups ---------------------------------------------------------

    async fn network(&self, spec: &ServiceSpec) -> Result<Network> {
        let ctx = &self.ctx;
        let ids: BTreeSet<String> = spec
            .subnets
            .iter()
            .chain(spec.lb_subnets())
            .cloned()
            .collect();
        let out = ctx
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(ids.iter().cloned().collect()))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if is_gone(&e) => {
                return Err(CloudError::invalid(
                    "subnets",
                    format!(
                        "{}: {}",
                        ids.iter().cloned().collect::<Vec<_>>().join(","),
                        super::error::message(&e).unwrap_or("not found")
                    ),
                ));
            }
            Err(e) => {
                return Err(sdk_error(
                    "DescribeSubnets",
                    format!(
                        "{} {}",
                        ids.iter().cloned().collect::<Vec<_>>().join(","),
                        self.place()
                    ),
                    e,
                ));
            }
        };
        let found: BTreeMap<String, String> = out
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some((s.subnet_id?, s.vpc_id?)))
            .collect();
        if let Some(missing) = ids.iter().find(|s| !found.contains_key(*s)) {
            return Err(CloudError::not_found("subnet", missing, &ctx.region));
        }
        let vpcs: BTreeSet<&String> = found.values().collect();
        if vpcs.len() != 1 {
            return Err(CloudError::invalid(
                "subnets",
                format!(
                    "they lie in different VPCs ({}): name subnets of one VPC",
                    vpcs.into_iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let vpc = vpcs.into_iter().next().cloned().unwrap_or_default();
        if let Some(want) = &spec.vpc
            && *want != vpc
        {
            return Err(CloudError::invalid(
                "vpc",
                format!("--vpc {want}, but the subnets lie in {vpc}"),
            ));
        }
        let cidr = ctx
            .ec2
            .describe_vpcs()
            .vpc_ids(&vpc)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeVpcs", format!("{vpc} {}", self.place()), e))?
            .vpcs
            .unwrap_or_default()
            .into_iter()
            .find_map(|v| v.cidr_block)
            .ok_or_else(|| CloudError::not_found("VPC", &vpc, &ctx.region))?;
        Ok(Network { vpc, cidr })
    }

    /// The image's root device name and size (GiB).
    async fn root_device(&self, image: &ImageId) -> Result<(String, i32)> {
        let ctx = &self.ctx;
        let img = super::images::describe_in(&ctx.ec2, image, &ctx.region)
            .await?
            .ok_or_else(|| CloudError::not_found("image", image, &ctx.region))?;
        let dev = img
            .root_device_name
            .clone()
            .ok_or_else(|| CloudError::invalid("image", format!("{image} names no root device")))?;
        let gb = img
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name.as_deref() == Some(dev.as_str()))
            .and_then(|m| m.ebs.as_ref()?.volume_size)
            .unwrap_or(8)
            .max(8);
        Ok((dev, gb))
    }

    /// Security groups tagged ours.
    async fn security_groups(&self, group: &GroupName) -> Result<Vec<SecurityGroup>> {
        let out = self
            .ctx
            .ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name(format!("tag:{ROLL_UP}"))
                    .values(group.as_str())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeSecurityGroups",
                    format!("tagged {ROLL_UP}={group} {}", self.place()),
                    e,
                )
            })?;
        Ok(out
            .security_groups
            .unwrap_or_default()
            .into_iter()
            .filter(|g| ours(&ec2_tag_map(g.tags()), group))
            .collect())
    }

    fn part_of<'a>(sgs: &'a [SecurityGroup], part: &str) -> Option<&'a SecurityGroup> {
        sgs.iter()
            .find(|g| ec2_tag_map(g.tags()).get(PART).map(String::as_str) == Some(part))
    }

    async fn launch_templates(
        &self,
        group: &GroupName,
    ) -> Result<Vec<aws_sdk_ec2::types::LaunchTemplate>> {
        let out = self
            .ctx
            .ec2
            .describe_launch_templates()
            .filters(
                Filter::builder()
                    .name(format!("tag:{ROLL_UP}"))
                    .values(group.as_str())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeLaunchTemplates",
                    format!("tagged {ROLL_UP}={group} {}", self.place()),
                    e,
                )
            })?;
        Ok(out
            .launch_templates
            .unwrap_or_default()
            .into_iter()
            .filter(|t| ours(&ec2_tag_map(t.tags()), group))
            .collect())
    }

    /// A launch template named `name` that is not ours (someone else's).
    async fn foreign_template(&self, name: &str) -> Result<bool> {
        let out = self
            .ctx
            .ec2
            .describe_launch_templates()
            .filters(
                Filter::builder()
                    .name("launch-template-name")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeLaunchTemplates",
                    format!("{name} {}", self.place()),
                    e,
                )
            })?;
        Ok(out
            .launch_templates
            .unwrap_or_default()
            .iter()
            .any(|t| t.launch_template_name.as_deref() == Some(name)))
    }

    async fn template_data(
        &self,
        lt: &str,
        version: &str,
    ) -> Result<Option<aws_sdk_ec2::types::ResponseLaunchTemplateData>> {
        match self
            .ctx
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(lt)
            .versions(version)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .launch_template_versions
                .unwrap_or_default()
                .into_iter()
                .find_map(|v| v.launch_template_data)),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(sdk_error(
                "DescribeLaunchTemplateVersions",
                format!("{lt} version {version} {}", self.place()),
                e,
            )),
        }
    }

    /// ELBv2 tags of up to 20 ARNs at a time.
    async fn elb_tags_of(&self, arns: &[String]) -> Result<BTreeMap<String, Tags>> {
        let mut out = BTreeMap::new();
        for chunk in arns.chunks(20) {
            let r = match self
                .ctx
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
            {
                Ok(r) => r,
                // One of them went away meanwhile: ask one by one.
                Err(e) if is_missing(&e) && chunk.len() > 1 => {
                    for a in chunk {
                        out.extend(Box::pin(self.elb_tags_of(std::slice::from_ref(a))).await?);
                    }
                    continue;
                }
                Err(e) if is_missing(&e) => continue,
                Err(e) => {
                    return Err(sdk_error(
                        "DescribeTags",
                        format!("{} {}", chunk.join(","), self.place()),
                        e,
                    ));
                }
            };
            for d in r.tag_descriptions.unwrap_or_default() {
                let t: Tags = d
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                    .collect();
                if let Some(a) = d.resource_arn {
                    out.insert(a, t);
                }
            }
        }
        Ok(out)
    }

    async fn elb_tags_one(&self, arn: &str) -> Result<Tags> {
        Ok(self
            .elb_tags_of(&[arn.to_owned()])
            .await?
            .remove(arn)
            .unwrap_or_default())
    }

    async fn target_group_named(&self, name: &str) -> Result<Option<TargetGroup>> {
        match self
            .ctx
            .elb
            .describe_target_groups()
            .names(name)
            .send()
            .await
        {
            Ok(o) => Ok(o
                .target_groups
                .unwrap_or_default()
                .into_iter()
                .find(|t| t.target_group_name.as_deref() == Some(name))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sdk_error(
                "DescribeTargetGroups",
                format!("{name} {}", self.place()),
                e,
            )),
        }
    }

    async fn load_balancer_named(&self, name: &str) -> Result<Option<LoadBalancer>> {
        match self
            .ctx
            .elb
            .describe_load_balancers()
            .names(name)
            .send()
            .await
        {
            Ok(o) => Ok(o
                .load_balancers
                .unwrap_or_default()
                .into_iter()
                .find(|l| l.load_balancer_name.as_deref() == Some(name))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sdk_error(
                "DescribeLoadBalancers",
                format!("{name} {}", self.place()),
                e,
            )),
        }
    }

    async fn load_balancer_arn(&self, arn: &str) -> Result<Option<LoadBalancer>> {
        match self
            .ctx
            .elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
        {
            Ok(o) => Ok(o
                .load_balancers
                .unwrap_or_default()
                .into_iter()
                .find(|l| l.load_balancer_arn.as_deref() == Some(arn))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sdk_error(
                "DescribeLoadBalancers",
                format!("{arn} {}", self.place()),
                e,
            )),
        }
    }

    async fn listeners_of(&self, lb: &str) -> Result<Vec<Listener>> {
        match self
            .ctx
            .elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
        {
            Ok(o) => Ok(o.listeners.unwrap_or_default()),
            Err(e) if is_missing(&e) => Ok(Vec::new()),
            Err(e) => Err(sdk_error(
                "DescribeListeners",
                format!("of {lb} {}", self.place()),
                e,
            )),
        }
    }

    async fn asg_named(&self, name: &str) -> Result<Option<AutoScalingGroup>> {
        let out = self
            .ctx
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeAutoScalingGroups",
                    format!("{name} {}", self.place()),
                    e,
                )
            })?;
        Ok(out
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.auto_scaling_group_name.as_deref() == Some(name)))
    }

    /// Groups carrying `tag=value` (also those being deleted).
    async fn asgs_tagged(&self, tag: &str, value: &str) -> Result<Vec<AutoScalingGroup>> {
        let mut groups = Vec::new();
        let mut next = None;
        loop {
            let page = self
                .ctx
                .autoscaling
                .describe_auto_scaling_groups()
                .filters(
                    aws_sdk_autoscaling::types::Filter::builder()
                        .name(format!("tag:{tag}"))
                        .values(value)
                        .build(),
                )
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "DescribeAutoScalingGroups",
                        format!("tagged {tag}={value} {}", self.place()),
                        e,
                    )
                })?;
            groups.extend(
                page.auto_scaling_groups
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|g| asg_tag_map(g).get(tag).map(String::as_str) == Some(value)),
            );
            match page.next_token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => break,
            }
        }
        Ok(groups)
    }

    /// Refuses a group `<group>` that `roll up` did not make.
    fn refuse_foreign_group(group: &GroupName, g: &AutoScalingGroup) -> Result<()> {
        let t = asg_tag_map(g);
        if ours(&t, group) {
            return Ok(());
        }
        let maker = if t.keys().any(|k| k.starts_with("aws:cloudformation:")) {
            "CloudFormation"
        } else {
            "Terraform or by hand"
        };
        Err(CloudError::invalid(
            "group",
            format!(
                "{group} was not made by roll up (it has no {ROLL_UP}={group} tag; made outside \
                 roll — {maker}): roll up/down never touch it; manage it where it was made, and \
                 roll it out with --listener and --target-group (or roll.toml)"
            ),
        ))
    }

    // ---- up --------------------------------------------------------------

    /// What differs between `spec` and the pieces that exist (empty:
    /// nothing, or nothing exists yet).
    pub async fn differences(&self, spec: &ServiceSpec) -> Result<Vec<Difference>> {
        let g = &spec.group;
        let mut d = Vec::new();
        let mut diff = |what: &str, have: String, want: String, change: Change| {
            if have != want {
                d.push(Difference {
                    what: what.into(),
                    have,
                    want,
                    change,
                });
            }
        };
        // The template's data: the group's pinned version if the group
        // exists (roll out moves it), else version 1.
        let lt = self.launch_templates(g).await?.into_iter().next();
        let asg = self.asg_named(g.as_str()).await?;
        if let Some(a) = &asg {
            Self::refuse_foreign_group(g, a)?;
            let size = a.desired_capacity.unwrap_or(0);
            diff(
                "size",
                size.to_string(),
                spec.size.to_string(),
                Change::RollScale,
            );
            let mut have: Vec<String> = a
                .vpc_zone_identifier
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            have.sort();
            let mut want = spec.subnets.clone();
            want.sort();
            diff(
                "instance subnets",
                have.join(","),
                want.join(","),
                Change::Recreate,
            );
        }
        if let Some(t) = &lt {
            let id = t.launch_template_id.clone().unwrap_or_default();
            let version = asg
                .as_ref()
                .and_then(|a| a.launch_template.as_ref()?.version.clone())
                .unwrap_or_else(|| "1".into());
            if let Some(data) = self.template_data(&id, &version).await? {
                let image = data.image_id.clone().unwrap_or_default();
                diff(
                    "image",
                    image,
                    spec.image.to_string(),
                    if asg.is_some() {
                        Change::RollOut
                    } else {
                        Change::Recreate
                    },
                );
                diff(
                    "instance type",
                    data.instance_type
                        .as_ref()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    spec.instance_type.clone(),
                    Change::Recreate,
                );
            }
        }
        for (suffix, _) in [("-a", "tg-a"), ("-b", "tg-b")] {
            let name = elb_name(g.as_str(), suffix);
            if let Some(tg) = self.target_group_named(&name).await? {
                let arn = tg.target_group_arn.clone().unwrap_or_default();
                if !ours(&self.elb_tags_one(&arn).await?, g) {
                    continue;
                }
                diff(
                    &format!("target group {name} port"),
                    tg.port.unwrap_or(0).to_string(),
                    spec.service_port.to_string(),
                    Change::Recreate,
                );
                diff(
                    &format!("target group {name} health check path"),
                    tg.health_check_path.clone().unwrap_or_default(),
                    spec.health_check.path.clone(),
                    Change::Recreate,
                );
            }
        }
        let lb = match &spec.load_balancer {
            Some(arn) => self.load_balancer_arn(arn).await?,
            None => {
                let lb = self.load_balancer_named(&elb_name(g.as_str(), "")).await?;
                if let Some(l) = &lb {
                    let scheme = l.scheme.as_ref().map(|s| s.as_str().to_owned());
                    let want = if spec.internet_facing {
                        "internet-facing"
                    } else {
                        "internal"
                    };
                    let arn = l.load_balancer_arn.clone().unwrap_or_default();
                    if ours(&self.elb_tags_one(&arn).await?, g) {
                        diff(
                            "load balancer scheme",
                            scheme.unwrap_or_default(),
                            want.into(),
                            Change::Recreate,
                        );
                    }
                }
                lb
            }
        };
        if let Some(l) = &lb {
            let arn = l.load_balancer_arn.clone().unwrap_or_default();
            // Our listener on another port than asked.
            let listeners = self.listeners_of(&arn).await?;
            let arns: Vec<String> = listeners
                .iter()
                .filter_map(|l| l.listener_arn.clone())
                .collect();
            let tags = self.elb_tags_of(&arns).await?;
            for li in &listeners {
                let la = li.listener_arn.clone().unwrap_or_default();
                if !tags.get(&la).is_some_and(|t| ours(t, g)) {
                    continue;
                }
                diff(
                    "listener port",
                    li.port.unwrap_or(0).to_string(),
                    spec.port.to_string(),
                    Change::Recreate,
                );
                diff(
                    "listener protocol",
                    li.protocol
                        .as_ref()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    spec.protocol().as_str().to_owned(),
                    Change::Recreate,
                );
                let cert = li
                    .certificates()
                    .iter()
                    .find_map(|c| c.certificate_arn.clone())
                    .unwrap_or_default();
                diff(
                    "listener certificate",
                    cert,
                    spec.certificate_arn.clone().unwrap_or_default(),
                    Change::Recreate,
                );
            }
        }
        Ok(d)
    }

    /// Makes what is missing of `spec`'s service (see the module doc);
    /// returns it, or the differences if what exists differs.
    pub async fn up(&self, spec: &ServiceSpec) -> Result<Outcome> {
        spec.check()?;
        let diffs = self.differences(spec).await?;
        if !diffs.is_empty() {
            return Ok(Outcome::Differs(diffs));
        }
        let g = &spec.group;
        let ctx = &self.ctx;
        let mut created = Vec::new();
        let net = self.network(spec).await?;
        let (root_dev, root_gb) = self.root_device(&spec.image).await?;

        // The balancer: an existing one, or ours (found by name, checked
        // by tag), else made after its security group.
        let existing_lb = match &spec.load_balancer {
            Some(arn) => Some(
                self.load_balancer_arn(arn)
                    .await?
                    .ok_or_else(|| CloudError::not_found("load balancer", arn, &ctx.region))?,
            ),
            None => None,
        };
        if let Some(l) = &existing_lb
            && l.vpc_id.as_deref() != Some(net.vpc.as_str())
        {
            return Err(CloudError::invalid(
                "load balancer",
                format!(
                    "{} lies in {}, the subnets in {}",
                    l.load_balancer_arn.as_deref().unwrap_or(""),
                    l.vpc_id.as_deref().unwrap_or("?"),
                    net.vpc
                ),
            ));
        }
        let sgs = self.security_groups(g).await?;
        let lb_sgs: Vec<String> = match &existing_lb {
            Some(l) => l.security_groups().to_vec(),
            None => {
                let cidr = if spec.internet_facing {
                    "0.0.0.0/0".to_owned()
                } else {
                    net.cidr.clone()
                };
                let sg = self
                    .ensure_sg(
                        spec,
                        &net.vpc,
                        Self::part_of(&sgs, "balancer-sg"),
                        "balancer-sg",
                        &sg_name(g, "balancer"),
                        spec.port,
                        Ingress::Cidr(cidr),
                        &mut created,
                    )
                    .await?;
                vec![sg]
            }
        };
        if lb_sgs.is_empty() {
            return Err(CloudError::invalid(
                "load balancer",
                "it has no security groups, so the instances cannot admit only it".to_owned(),
            ));
        }
        let instance_sg = self
            .ensure_sg(
                spec,
                &net.vpc,
                Self::part_of(&sgs, "instances-sg"),
                "instances-sg",
                &sg_name(g, "instances"),
                spec.service_port,
                Ingress::Groups(lb_sgs.clone()),
                &mut created,
            )
            .await?;
        let lt = self
            .ensure_template(spec, &root_dev, root_gb, &instance_sg, &mut created)
            .await?;
        let tg_a = self
            .ensure_target_group(spec, &net.vpc, "-a", "tg-a", &mut created)
            .await?;
        let tg_b = self
            .ensure_target_group(spec, &net.vpc, "-b", "tg-b", &mut created)
            .await?;
        let (lb, owned) = match existing_lb {
            Some(l) => (l, false),
            None => (
                self.ensure_load_balancer(spec, &lb_sgs, &mut created)
                    .await?,
                true,
            ),
        };
        let lb_arn = lb.load_balancer_arn.clone().unwrap_or_default();
        let listener = self
            .ensure_listener(spec, &lb_arn, &tg_a, &tg_b, &mut created)
            .await?;
        self.ensure_group(spec, &lt, &tg_a, &mut created).await?;
        let dns = lb.dns_name.clone().unwrap_or_default();
        let scheme = if spec.certificate_arn.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(Outcome::Ready(Box::new(ServiceInfo {
            group: g.to_string(),
            image: spec.image.to_string(),
            size: spec.size,
            region: ctx.region.to_string(),
            vpc: net.vpc,
            subnets: spec.subnets.clone(),
            load_balancer: lb_arn,
            load_balancer_owned: owned,
            url: format!("{scheme}://{dns}:{}", spec.port),
            dns_name: dns,
            listener,
            target_groups: vec![tg_a, tg_b],
            launch_template: lt,
            instance_security_group: instance_sg,
            balancer_security_groups: lb_sgs,
            created,
        })))
    }

    #[allow(clippy::too_many_arguments)]
    async fn ensure_sg(
        &self,
        spec: &ServiceSpec,
        vpc: &str,
        found: Option<&SecurityGroup>,
        part: &str,
        name: &str,
        port: u16,
        ingress: Ingress,
        created: &mut Vec<String>,
    ) -> Result<String> {
        let ctx = &self.ctx;
        let (id, perms) = match found {
            Some(sg) => (
                sg.group_id.clone().unwrap_or_default(),
                sg.ip_permissions().to_vec(),
            ),
            None => {
                let out = ctx
                    .ec2
                    .create_security_group()
                    .group_name(name)
                    .description(format!("kiln roll up {}: {part}", spec.group))
                    .vpc_id(vpc)
                    .tag_specifications(tag_spec(
                        ResourceType::SecurityGroup,
                        &part_tags(&spec.group, part),
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        if code(&e) == Some("InvalidGroup.Duplicate") {
                            CloudError::invalid(
                                "security group",
                                format!(
                                    "{name} exists in {vpc} without {ROLL_UP}={}: roll up did not \
                                     make it and will not adopt it; remove or rename it",
                                    spec.group
                                ),
                            )
                        } else {
                            call_error(
                                "CreateSecurityGroup",
                                format!("{name} in {vpc} {}", self.place()),
                                e,
                            )
                        }
                    })?;
                let id = out.group_id.unwrap_or_default();
                created.push(format!("security group {id} ({name})"));
                (id, Vec::new())
            }
        };
        let p = i32::from(port);
        let has = |pm: &IpPermission| {
            pm.ip_protocol.as_deref() == Some("tcp")
                && pm.from_port == Some(p)
                && pm.to_port == Some(p)
        };
        let missing: Vec<IpPermission> = match &ingress {
            Ingress::Cidr(c) => {
                let there = perms
                    .iter()
                    .any(|pm| has(pm) && pm.ip_ranges().iter().any(|r| r.cidr_ip() == Some(c)));
                if there {
                    Vec::new()
                } else {
                    vec![
                        IpPermission::builder()
                            .ip_protocol("tcp")
                            .from_port(p)
                            .to_port(p)
                            .ip_ranges(
                                IpRange::builder()
                                    .cidr_ip(c)
                                    .description("kiln: the listener")
                                    .build(),
                            )
                            .build(),
                    ]
                }
            }
            Ingress::Groups(gs) => gs
                .iter()
                .filter(|g| {
                    !perms.iter().any(|pm| {
                        has(pm)
                            && pm
                                .user_id_group_pairs()
                                .iter()
                                .any(|u| u.group_id() == Some(g.as_str()))
                    })
                })
                .map(|g| {
                    IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(p)
                        .to_port(p)
                        .user_id_group_pairs(
                            UserIdGroupPair::builder()
                                .group_id(g)
                                .description("kiln: the service port, from the balancer only")
                                .build(),
                        )
                        .build()
                })
                .collect(),
        };
        if !missing.is_empty() {
            match ctx
                .ec2
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(missing))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {}
                Err(e) => {
                    return Err(call_error(
                        "AuthorizeSecurityGroupIngress",
                        format!("{id} port {port} {}", self.place()),
                        e,
                    ));
                }
            }
        }
        Ok(id)
    }

    async fn ensure_template(
        &self,
        spec: &ServiceSpec,
        root_dev: &str,
        root_gb: i32,
        instance_sg: &str,
        created: &mut Vec<String>,
    ) -> Result<String> {
        let g = &spec.group;
        if let Some(t) = self.launch_templates(g).await?.into_iter().next() {
            return Ok(t.launch_template_id.unwrap_or_default());
        }
        let name = g.to_string();
        if self.foreign_template(&name).await? {
            return Err(CloudError::invalid(
                "launch template",
                format!(
                    "{name} exists without {ROLL_UP}={g}: roll up did not make it and will not \
                     adopt it; remove or rename it"
                ),
            ));
        }
        let out = self
            .ctx
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .version_description(format!("kiln roll up: image {}", spec.image))
            .client_token(token(&[
                "roll-up",
                g.as_str(),
                "template",
                spec.image.as_str(),
            ]))
            .launch_template_data(launch_data(spec, root_dev, root_gb, instance_sg))
            .tag_specifications(tag_spec(
                ResourceType::LaunchTemplate,
                &part_tags(g, "template"),
            ))
            .send()
            .await
            .map_err(|e| {
                call_error(
                    "CreateLaunchTemplate",
                    format!("{name} (image {}) {}", spec.image, self.place()),
                    e,
                )
            })?;
        let id = out
            .launch_template
            .and_then(|t| t.launch_template_id)
            .unwrap_or_default();
        created.push(format!("launch template {id} ({name}) version 1"));
        Ok(id)
    }

    async fn ensure_target_group(
        &self,
        spec: &ServiceSpec,
        vpc: &str,
        suffix: &str,
        part: &str,
        created: &mut Vec<String>,
    ) -> Result<String> {
        let g = &spec.group;
        let ctx = &self.ctx;
        let name = elb_name(g.as_str(), suffix);
        let arn = match self.target_group_named(&name).await? {
            Some(t) => {
                let arn = t.target_group_arn.unwrap_or_default();
                if !ours(&self.elb_tags_one(&arn).await?, g) {
                    return Err(CloudError::invalid(
                        "target group",
                        format!(
                            "{name} exists without {ROLL_UP}={g}: roll up did not make it and \
                             will not adopt it; remove or rename it"
                        ),
                    ));
                }
                arn
            }
            None => {
                let h = &spec.health_check;
                let out = ctx
                    .elb
                    .create_target_group()
                    .name(&name)
                    .protocol(ProtocolEnum::Http)
                    .port(i32::from(spec.service_port))
                    .vpc_id(vpc)
                    .target_type(TargetTypeEnum::Instance)
                    .health_check_enabled(true)
                    .health_check_protocol(ProtocolEnum::Http)
                    .health_check_path(&h.path)
                    .health_check_interval_seconds((h.interval_ms / 1000) as i32)
                    .health_check_timeout_seconds((h.timeout_ms / 1000) as i32)
                    .healthy_threshold_count(h.healthy_threshold as i32)
                    .unhealthy_threshold_count(h.unhealthy_threshold as i32)
                    .matcher(Matcher::builder().http_code("200").build())
                    .set_tags(Some(elb_tags(&part_tags(g, part))))
                    .send()
                    .await
                    .map_err(|e| {
                        call_error("CreateTargetGroup", format!("{name} {}", self.place()), e)
                    })?;
                let arn = out
                    .target_groups
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|t| t.target_group_arn)
                    .unwrap_or_default();
                created.push(format!("target group {name}"));
                arn
            }
        };
        // The delay is an attribute (a second call): a run killed between
        // the two is finished here.
        let want = spec.deregistration_delay_s.to_string();
        let have = ctx
            .elb
            .describe_target_group_attributes()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "DescribeTargetGroupAttributes",
                    format!("{arn} {}", self.place()),
                    e,
                )
            })?
            .attributes
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.key.as_deref() == Some(DEREGISTRATION_DELAY))
            .and_then(|a| a.value);
        if have.as_deref() != Some(want.as_str()) {
            ctx.elb
                .modify_target_group_attributes()
                .target_group_arn(&arn)
                .attributes(
                    TargetGroupAttribute::builder()
                        .key(DEREGISTRATION_DELAY)
                        .value(&want)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    call_error(
                        "ModifyTargetGroupAttributes",
                        format!("{arn} ({DEREGISTRATION_DELAY}={want}) {}", self.place()),
                        e,
                    )
                })?;
        }
        Ok(arn)
    }

    async fn ensure_load_balancer(
        &self,
        spec: &ServiceSpec,
        sgs: &[String],
        created: &mut Vec<String>,
    ) -> Result<LoadBalancer> {
        let g = &spec.group;
        let name = elb_name(g.as_str(), "");
        if let Some(l) = self.load_balancer_named(&name).await? {
            let arn = l.load_balancer_arn.clone().unwrap_or_default();
            if !ours(&self.elb_tags_one(&arn).await?, g) {
                return Err(CloudError::invalid(
                    "load balancer",
                    format!(
                        "{name} exists without {ROLL_UP}={g}: roll up did not make it and will \
                         not adopt it; pass --load-balancer {arn} to put the listener on it"
                    ),
                ));
            }
            return Ok(l);
        }
        let out = self
            .ctx
            .elb
            .create_load_balancer()
            .name(&name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(if spec.internet_facing {
                LoadBalancerSchemeEnum::InternetFacing
            } else {
                LoadBalancerSchemeEnum::Internal
            })
            .set_subnets(Some(spec.lb_subnets().to_vec()))
            .set_security_groups(Some(sgs.to_vec()))
            .set_tags(Some(elb_tags(&part_tags(g, "balancer"))))
            .send()
            .await
            .map_err(|e| call_error("CreateLoadBalancer", format!("{name} {}", self.place()), e))?;
        let lb = out
            .load_balancers
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::Api {
                op: format!("CreateLoadBalancer {name}"),
                message: "the answer named no load balancer".into(),
                source: None,
            })?;
        created.push(format!("load balancer {name}"));
        Ok(lb)
    }

    async fn ensure_listener(
        &self,
        spec: &ServiceSpec,
        lb: &str,
        a: &str,
        b: &str,
        created: &mut Vec<String>,
    ) -> Result<String> {
        let g = &spec.group;
        let port = i32::from(spec.port);
        if let Some(l) = self
            .listeners_of(lb)
            .await?
            .into_iter()
            .find(|l| l.port == Some(port))
        {
            let arn = l.listener_arn.unwrap_or_default();
            if !ours(&self.elb_tags_one(&arn).await?, g) {
                return Err(CloudError::invalid(
                    "listener",
                    format!(
                        "{lb} already listens on port {port} ({arn}), and roll up did not make \
                         that listener: choose another --port"
                    ),
                ));
            }
            return Ok(arn);
        }
        let mut req = self
            .ctx
            .elb
            .create_listener()
            .load_balancer_arn(lb)
            .protocol(spec.protocol())
            .port(port)
            .default_actions(weighted_forward(a, b))
            .set_tags(Some(elb_tags(&part_tags(g, "listener"))));
        if let Some(cert) = &spec.certificate_arn {
            req = req
                .certificates(Certificate::builder().certificate_arn(cert).build())
                .ssl_policy(&spec.tls_policy);
        }
        let out = req.send().await.map_err(|e| {
            call_error(
                "CreateListener",
                format!("port {port} on {lb} {}", self.place()),
                e,
            )
        })?;
        let arn = out
            .listeners
            .unwrap_or_default()
            .into_iter()
            .find_map(|l| l.listener_arn)
            .unwrap_or_default();
        created.push(format!("listener {} :{port}", spec.protocol().as_str()));
        Ok(arn)
    }

    async fn ensure_group(
        &self,
        spec: &ServiceSpec,
        lt: &str,
        tg: &str,
        created: &mut Vec<String>,
    ) -> Result<()> {
        let g = &spec.group;
        if let Some(a) = self.asg_named(g.as_str()).await? {
            Self::refuse_foreign_group(g, &a)?;
            if a.status.as_deref() != Some(DELETING) {
                return Ok(());
            }
            return Err(CloudError::invalid(
                "group",
                format!("{g} is being deleted (roll down): run roll up again once it is gone"),
            ));
        }
        let mut t = part_tags(g, "group");
        t.insert(ROLL_CREATED.into(), "true".into());
        let n = i32::try_from(spec.size).unwrap_or(i32::MAX);
        match self
            .ctx
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(g.as_str())
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(lt)
                    // Numeric, never $Latest (see groups.rs).
                    .version("1")
                    .build(),
            )
            .min_size(n)
            .max_size(n)
            .desired_capacity(n)
            .vpc_zone_identifier(spec.subnets.join(","))
            .target_group_arns(tg)
            .health_check_type("ELB")
            .health_check_grace_period(i32::try_from(spec.grace_period_s).unwrap_or(i32::MAX))
            .set_tags(Some(asg_tags(g, &t)))
            .send()
            .await
        {
            Ok(_) => {
                created.push(format!("group {g} ({} instances)", spec.size));
                Ok(())
            }
            // A racing rerun made it: checked as found next time.
            Err(e) if code(&e) == Some("AlreadyExists") => Ok(()),
            Err(e) => Err(call_error(
                "CreateAutoScalingGroup",
                format!("{g} {}", self.place()),
                e,
            )),
        }
    }

    // ---- down ------------------------------------------------------------

    /// Removes what `up` made for `group` (see the module doc). A group
    /// `<group>` that `up` did not make is refused before anything is
    /// touched.
    pub async fn down(&self, group: &GroupName) -> Result<Removed> {
        let mut removed = Vec::new();
        self.check_down(group).await?;
        // Groups: ours, and twins roll made for the group.
        let mut asgs = self.asgs_tagged(ROLL_UP, group.as_str()).await?;
        for t in self.asgs_tagged(tags::ROLL_GROUP, group.as_str()).await? {
            let created = asg_tag_map(&t).get(ROLL_CREATED).map(String::as_str) == Some("true");
            if created
                && !asgs
                    .iter()
                    .any(|a| a.auto_scaling_group_name == t.auto_scaling_group_name)
            {
                asgs.push(t);
            }
        }
        // Twins first: they were made like the group.
        asgs.sort_by_key(|a| a.auto_scaling_group_name.as_deref() == Some(group.as_str()));
        for a in &asgs {
            self.delete_asg(a).await?;
            removed.push(format!(
                "group {} ({} instances)",
                a.auto_scaling_group_name.as_deref().unwrap_or(""),
                a.instances().len()
            ));
        }
        // Target groups and load balancers tagged ours, by a scan.
        let tgs = self.elb_owned_target_groups(group).await?;
        let lbs = self.elb_owned_load_balancers(group).await?;
        // Listeners: ours on any balancer that forwards to our target
        // groups (an existing ALB given to up), or on ours.
        let mut lb_arns: BTreeSet<String> = tgs
            .iter()
            .flat_map(|t| t.load_balancer_arns().to_vec())
            .collect();
        lb_arns.extend(lbs.iter().filter_map(|l| l.load_balancer_arn.clone()));
        for lb in &lb_arns {
            let listeners = self.listeners_of(lb).await?;
            let arns: Vec<String> = listeners
                .iter()
                .filter_map(|l| l.listener_arn.clone())
                .collect();
            let tags = self.elb_tags_of(&arns).await?;
            for (arn, t) in tags {
                if !ours(&t, group) {
                    continue;
                }
                match self
                    .ctx
                    .elb
                    .delete_listener()
                    .listener_arn(&arn)
                    .send()
                    .await
                {
                    Ok(_) => removed.push(format!("listener {arn}")),
                    Err(e) if is_missing(&e) => {}
                    Err(e) => {
                        return Err(call_error(
                            "DeleteListener",
                            format!("{arn} {}", self.place()),
                            e,
                        ));
                    }
                }
            }
        }
        for l in &lbs {
            let arn = l.load_balancer_arn.clone().unwrap_or_default();
            match self
                .ctx
                .elb
                .delete_load_balancer()
                .load_balancer_arn(&arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => {
                    return Err(call_error(
                        "DeleteLoadBalancer",
                        format!("{arn} {}", self.place()),
                        e,
                    ));
                }
            }
            wait_until(
                self.ctx.wait,
                &format!("load balancer {arn} to be deleted"),
                || async { Ok(self.load_balancer_arn(&arn).await?.is_none().then_some(())) },
            )
            .await?;
            removed.push(format!(
                "load balancer {}",
                l.load_balancer_name.as_deref().unwrap_or(&arn)
            ));
        }
        for t in &tgs {
            let arn = t.target_group_arn.clone().unwrap_or_default();
            // In use until the listener and balancer are gone on ELBv2's
            // side: retried, bounded.
            wait_until(
                self.ctx.wait,
                &format!("target group {arn} to be deletable"),
                || async {
                    match self
                        .ctx
                        .elb
                        .delete_target_group()
                        .target_group_arn(&arn)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(Some(())),
                        Err(e) if is_missing(&e) => Ok(Some(())),
                        Err(e) if code(&e) == Some("ResourceInUse") => Ok(None),
                        Err(e) => Err(call_error(
                            "DeleteTargetGroup",
                            format!("{arn} {}", self.place()),
                            e,
                        )),
                    }
                },
            )
            .await?;
            removed.push(format!(
                "target group {}",
                t.target_group_name.as_deref().unwrap_or(&arn)
            ));
        }
        for lt in self.launch_templates(group).await? {
            let id = lt.launch_template_id.clone().unwrap_or_default();
            match self
                .ctx
                .ec2
                .delete_launch_template()
                .launch_template_id(&id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_gone(&e) || code(&e).is_some_and(|c| c.contains("NotFound")) => {}
                Err(e) => {
                    return Err(sdk_error(
                        "DeleteLaunchTemplate",
                        format!("{id} {}", self.place()),
                        e,
                    ));
                }
            }
            removed.push(format!(
                "launch template {id} ({})",
                lt.launch_template_name.as_deref().unwrap_or("")
            ));
        }
        let mut sgs = self.security_groups(group).await?;
        // The instances' group refers to the balancer's: it goes first.
        sgs.sort_by_key(|s| {
            ec2_tag_map(s.tags()).get(PART).map(String::as_str) != Some("instances-sg")
        });
        for sg in &sgs {
            let id = sg.group_id.clone().unwrap_or_default();
            wait_until(
                self.ctx.wait,
                &format!("security group {id} to be deletable"),
                || async {
                    match self
                        .ctx
                        .ec2
                        .delete_security_group()
                        .group_id(&id)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(Some(())),
                        Err(e) if is_gone(&e) => Ok(Some(())),
                        // ENIs of terminated instances or the balancer
                        // still use it for a while.
                        Err(e) if code(&e) == Some("DependencyViolation") => Ok(None),
                        Err(e) => Err(sdk_error(
                            "DeleteSecurityGroup",
                            format!("{id} {}", self.place()),
                            e,
                        )),
                    }
                },
            )
            .await?;
            removed.push(format!(
                "security group {id} ({})",
                sg.group_name.as_deref().unwrap_or("")
            ));
        }
        Ok(Removed { removed })
    }

    /// [`CloudError::Invalid`] if a group `<group>` exists that `up` did
    /// not make (it names who did, where it can tell); fine if there is
    /// none.
    pub async fn check_down(&self, group: &GroupName) -> Result<()> {
        match self.asg_named(group.as_str()).await? {
            Some(a) => Self::refuse_foreign_group(group, &a),
            None => Ok(()),
        }
    }

    async fn delete_asg(&self, a: &AutoScalingGroup) -> Result<()> {
        let ctx = &self.ctx;
        let name = a.auto_scaling_group_name.clone().unwrap_or_default();
        if a.status.as_deref() != Some(DELETING) {
            match ctx
                .autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(&name)
                .min_size(0)
                .max_size(0)
                .desired_capacity(0)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => {
                    return Err(call_error(
                        "UpdateAutoScalingGroup",
                        format!("{name} (size 0) {}", self.place()),
                        e,
                    ));
                }
            }
            // moto leaves terminated members registered: take them out,
            // as Auto Scaling itself does.
            let members: Vec<String> = a
                .instances()
                .iter()
                .filter_map(|i| i.instance_id.clone())
                .collect();
            if !members.is_empty() {
                for tg in a.target_group_arns() {
                    super::groups::deregister_instances(&ctx.elb, tg, &members, &self.place())
                        .await?;
                }
            }
            match ctx
                .autoscaling
                .delete_auto_scaling_group()
                .auto_scaling_group_name(&name)
                .force_delete(true)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => {
                    return Err(call_error(
                        "DeleteAutoScalingGroup",
                        format!("{name} {}", self.place()),
                        e,
                    ));
                }
            }
        }
        wait_until(ctx.wait, &format!("group {name} to be deleted"), || async {
            Ok(self.asg_named(&name).await?.is_none().then_some(()))
        })
        .await
    }

    async fn elb_owned_target_groups(&self, group: &GroupName) -> Result<Vec<TargetGroup>> {
        let mut all = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .ctx
                .elb
                .describe_target_groups()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTargetGroups", self.place(), e))?;
            all.extend(page.target_groups.unwrap_or_default());
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        let arns: Vec<String> = all
            .iter()
            .filter_map(|t| t.target_group_arn.clone())
            .collect();
        let tags = self.elb_tags_of(&arns).await?;
        Ok(all
            .into_iter()
            .filter(|t| {
                t.target_group_arn
                    .as_ref()
                    .and_then(|a| tags.get(a))
                    .is_some_and(|t| ours(t, group))
            })
            .collect())
    }

    async fn elb_owned_load_balancers(&self, group: &GroupName) -> Result<Vec<LoadBalancer>> {
        let mut all = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .ctx
                .elb
                .describe_load_balancers()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeLoadBalancers", self.place(), e))?;
            all.extend(page.load_balancers.unwrap_or_default());
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        let arns: Vec<String> = all
            .iter()
            .filter_map(|l| l.load_balancer_arn.clone())
            .collect();
        let tags = self.elb_tags_of(&arns).await?;
        Ok(all
            .into_iter()
            .filter(|l| {
                l.load_balancer_arn
                    .as_ref()
                    .and_then(|a| tags.get(a))
                    .is_some_and(|t| ours(t, group))
            })
            .collect())
    }
}

enum Ingress {
    Cidr(String),
    Groups(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            group: GroupName::from("web"),
            image: ImageId::from("ami-1"),
            size: 2,
            vpc: None,
            subnets: vec!["subnet-1".into()],
            lb_subnets: Vec::new(),
            load_balancer: None,
            internet_facing: false,
            port: 443,
            service_port: 8080,
            instance_type: "t3.small".into(),
            certificate_arn: Some("arn:aws:acm:us-east-1:1:certificate/x".into()),
            tls_policy: TLS_POLICY.into(),
            health_check: HealthCheck {
                path: "/ready".into(),
                interval_ms: 10_000,
                timeout_ms: 5_000,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
            },
            deregistration_delay_s: 30,
            grace_period_s: 60,
        }
    }

    #[test]
    fn elb_names_fit_and_never_collide() {
        assert_eq!(elb_name("web", "-a"), "web-a");
        assert_eq!(elb_name("web", ""), "web");
        for g in [
            "search_api",
            "a--b",
            "-x",
            "internal-web",
            "a-very-long-group-name-that-does-not-fit-in-32",
            "___",
        ] {
            for s in ["", "-a", "-b"] {
                let n = elb_name(g, s);
                assert!(n.len() <= 32, "{n}");
                assert!(!n.contains("--"), "{n}");
                assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
                assert!(!n.starts_with("internal-"), "{n}");
                assert!(
                    n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{n}"
                );
            }
        }
        assert_ne!(elb_name("a_b", "-a"), elb_name("a-b", "-a"));
    }

    #[test]
    fn https_listeners_and_the_template_are_built_as_documented() {
        let s = spec();
        s.check().unwrap();
        assert_eq!(s.protocol(), ProtocolEnum::Https);
        let d = launch_data(&s, "/dev/xvda", 8, "sg-i");
        let ni = &d.network_interfaces()[0];
        assert_eq!(ni.associate_public_ip_address, Some(false));
        assert_eq!(ni.groups(), ["sg-i"]);
        let md = d.metadata_options.as_ref().unwrap();
        assert_eq!(
            md.http_tokens,
            Some(LaunchTemplateHttpTokensState::Required)
        );
        assert_eq!(md.http_put_response_hop_limit, Some(1));
        let root = &d.block_device_mappings()[0];
        assert_eq!(root.device_name.as_deref(), Some("/dev/xvda"));
        let ebs = root.ebs.as_ref().unwrap();
        assert_eq!(ebs.encrypted, Some(true));
        assert_eq!(ebs.volume_type, Some(VolumeType::Gp3));
        assert!(
            d.security_group_ids().is_empty(),
            "only through the interface"
        );
        let f = weighted_forward("arn:a", "arn:b");
        let l = Listener::builder().default_actions(f).build();
        assert_eq!(
            super::super::lb::forwards(&l).map(|(all, fwd)| (all.len(), fwd.0)),
            Some((2, "arn:a".to_owned()))
        );
    }

    #[test]
    fn specs_outside_the_limits_are_refused_before_any_call() {
        let bad = |f: &dyn Fn(&mut ServiceSpec)| {
            let mut s = spec();
            f(&mut s);
            s.check().unwrap_err().is_bad_input()
        };
        assert!(bad(&|s| s.subnets.clear()));
        assert!(bad(&|s| s.subnets = vec!["sn-1".into()]));
        assert!(bad(&|s| s.health_check.interval_ms = 1000));
        assert!(bad(&|s| s.health_check.timeout_ms = 10_000));
        assert!(bad(&|s| s.health_check.healthy_threshold = 1));
        assert!(bad(&|s| s.deregistration_delay_s = 3601));
        assert!(bad(&|s| s.load_balancer = Some("my-alb".into())));
        assert!(bad(&|s| s.instance_type = "big".into()));
    }
}
