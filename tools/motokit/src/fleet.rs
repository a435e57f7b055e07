//! A service's fleet on moto, made with the raw SDK the way Terraform
//! would make it before kiln ever sees it: the default VPC's subnets, a
//! security group, a launch template whose version 1 carries full launch
//! data (instance type, security group, encrypted gp3 root, IMDSv2,
//! instance tags, optionally user-data) and a seeded AMI, an internal ALB with two
//! target groups (`/ready` health checks, a deregistration delay) and an
//! HTTP listener whose weighted forward sends everything to the first
//! (the second at weight 0: the blue/green pair), and an Auto Scaling
//! group pinned to version 1 in the first target group.

use std::time::Duration;

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, VolumeType,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, LoadBalancerSchemeEnum, ProtocolEnum,
    TargetGroupAttribute, TargetGroupTuple, TargetTypeEnum,
};

use crate::{Moto, TEST_KEY};

/// The service port of every fleet's target groups.
pub const FLEET_PORT: u16 = 8080;
/// The target groups' health check: path, interval, timeout (seconds),
/// healthy and unhealthy thresholds.
pub const HEALTH_CHECK: (&str, u64, u64, u32, u32) = ("/ready", 5, 2, 2, 2);
/// The target groups' deregistration delay.
pub const DEREGISTRATION_DELAY: Duration = Duration::from_secs(30);

/// What to make; [`FleetSpec::new`] has the usual sizes.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Prefix of every name (at most 24 characters: target group names
    /// take 32, and moto refuses `--` in them).
    pub name: String,
    /// The AMI of launch-template version 1.
    pub image: String,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    /// The version the group names (`"1"`, or `"$Latest"` to make a group
    /// kiln must refuse).
    pub version: String,
    /// Tags on the group (none: a group Terraform made and roll never
    /// touched).
    pub group_tags: Vec<(String, String)>,
    /// Put user-data in the launch template. Off by default: moto stores
    /// the user-data of a version made by CreateLaunchTemplateVersion
    /// unparsed and then answers every launch from that version with a 500
    /// (an assertion in its `user_data`), so fixtures that launch from
    /// versions kiln makes leave it out.
    pub user_data: bool,
}

impl FleetSpec {
    /// Group `name` of 1 instance (min 0, max 4) on `image`, version 1,
    /// untagged.
    pub fn new(name: &str, image: &str) -> FleetSpec {
        FleetSpec {
            name: name.into(),
            image: image.into(),
            desired: 1,
            min: 0,
            max: 4,
            version: "1".into(),
            group_tags: Vec::new(),
            user_data: false,
        }
    }
}

/// What [`Moto::fleet`] made.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub vpc: String,
    pub subnets: Vec<String>,
    pub security_group: String,
    pub launch_template: String,
    pub group: String,
    pub load_balancer: String,
    /// `<dns name>:80`.
    pub address: String,
    pub listener: String,
    /// Forwarded to (weight 1); the group's target group.
    pub tg_a: String,
    /// Named by the listener at weight 0; empty.
    pub tg_b: String,
}

impl Moto {
    pub async fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config(TEST_KEY, TEST_KEY).await)
    }

    pub async fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk_config(TEST_KEY, TEST_KEY).await)
    }

    /// `n` distinct AMIs moto seeds (Amazon's AL2023 images): launchable,
    /// no kiln tags.
    pub async fn seeded_images(&self, n: usize) -> Vec<String> {
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        let mut ids: Vec<String> = ec2
            .describe_images()
            .owners("amazon")
            .filters(
                Filter::builder()
                    .name("name")
                    .values("al2023-ami-2023.*-x86_64")
                    .build(),
            )
            .send()
            .await
            .expect("DescribeImages")
            .images
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.image_id)
            .collect();
        ids.sort();
        ids.dedup();
        assert!(
            ids.len() >= n,
            "moto seeds only {} AL2023 images",
            ids.len()
        );
        ids.truncate(n);
        ids
    }

    /// The default VPC and its subnets.
    pub async fn default_subnets(&self) -> (String, Vec<String>) {
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        let vpc = ec2
            .describe_vpcs()
            .filters(Filter::builder().name("is-default").values("true").build())
            .send()
            .await
            .expect("DescribeVpcs")
            .vpcs
            .unwrap_or_default()
            .into_iter()
            .find_map(|v| v.vpc_id)
            .expect("a default VPC");
        let mut subnets: Vec<String> = ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .expect("DescribeSubnets")
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.subnet_id)
            .collect();
        subnets.sort();
        (vpc, subnets)
    }

    /// A launch template whose version 1 launches `image` with full
    /// launch data (user-data too if `user_data`); returns its id.
    pub async fn launch_template(
        &self,
        name: &str,
        image: &str,
        security_group: &str,
        user_data: bool,
    ) -> String {
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        ec2.create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
                    .security_group_ids(security_group)
                    // `#!/bin/sh\necho searchd\n`
                    .set_user_data(user_data.then(|| "IyEvYmluL3NoCmVjaG8gc2VhcmNoZAo=".into()))
                    .block_device_mappings(
                        LaunchTemplateBlockDeviceMappingRequest::builder()
                            .device_name("/dev/xvda")
                            .ebs(
                                LaunchTemplateEbsBlockDeviceRequest::builder()
                                    .volume_size(8)
                                    .volume_type(VolumeType::Gp3)
                                    .encrypted(true)
                                    .delete_on_termination(true)
                                    .build(),
                            )
                            .build(),
                    )
                    .metadata_options(
                        LaunchTemplateInstanceMetadataOptionsRequest::builder()
                            .http_tokens(LaunchTemplateHttpTokensState::Required)
                            .http_put_response_hop_limit(1)
                            .build(),
                    )
                    .tag_specifications(
                        LaunchTemplateTagSpecificationRequest::builder()
                            .resource_type(ResourceType::Instance)
                            .tags(
                                aws_sdk_ec2::types::Tag::builder()
                                    .key("service")
                                    .value(name)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("CreateLaunchTemplate")
            .launch_template
            .and_then(|t| t.launch_template_id)
            .expect("a launch template id")
    }

    /// An Auto Scaling group of `spec`'s sizes on launch template `lt`
    /// (version `spec.version`) in `subnets`, registered in `tg`.
    pub async fn auto_scaling_group(
        &self,
        spec: &FleetSpec,
        lt: &str,
        subnets: &[String],
        tg: Option<&str>,
    ) {
        let asg = self.autoscaling().await;
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(&spec.name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(lt)
                    .version(&spec.version)
                    .build(),
            )
            .min_size(spec.min)
            .max_size(spec.max)
            .desired_capacity(spec.desired)
            .vpc_zone_identifier(subnets.join(","))
            .set_target_group_arns(tg.map(|t| vec![t.to_owned()]))
            .health_check_type("ELB")
            .health_check_grace_period(60)
            .set_tags(Some(
                spec.group_tags
                    .iter()
                    .map(|(k, v)| {
                        Tag::builder()
                            .resource_id(&spec.name)
                            .resource_type("auto-scaling-group")
                            .key(k)
                            .value(v)
                            .propagate_at_launch(false)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("CreateAutoScalingGroup");
    }

    /// The whole fleet of `spec` (see the module doc).
    pub async fn fleet(&self, spec: &FleetSpec) -> Fleet {
        assert!(
            spec.name.len() <= 24 && !spec.name.contains("--"),
            "{}",
            spec.name
        );
        let ec2 = self.ec2(TEST_KEY, TEST_KEY).await;
        let elb = self.elb().await;
        let (vpc, subnets) = self.default_subnets().await;
        let subnets: Vec<String> = subnets.into_iter().take(2).collect();
        let security_group = ec2
            .create_security_group()
            .group_name(&spec.name)
            .description("service")
            .vpc_id(&vpc)
            .send()
            .await
            .expect("CreateSecurityGroup")
            .group_id
            .expect("a security group id");
        let launch_template = self
            .launch_template(&spec.name, &spec.image, &security_group, spec.user_data)
            .await;
        let lb = elb
            .create_load_balancer()
            .name(&spec.name)
            .set_subnets(Some(subnets.clone()))
            .security_groups(&security_group)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .send()
            .await
            .expect("CreateLoadBalancer")
            .load_balancers
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("a load balancer");
        let load_balancer = lb.load_balancer_arn.expect("an ARN");
        let (path, interval, timeout, up, down) = HEALTH_CHECK;
        let mut tgs = Vec::new();
        for suffix in ["a", "b"] {
            let arn = elb
                .create_target_group()
                .name(format!("{}-{suffix}", spec.name))
                .protocol(ProtocolEnum::Http)
                .port(i32::from(FLEET_PORT))
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Instance)
                .health_check_path(path)
                .health_check_interval_seconds(interval as i32)
                .health_check_timeout_seconds(timeout as i32)
                .healthy_threshold_count(up as i32)
                .unhealthy_threshold_count(down as i32)
                .send()
                .await
                .expect("CreateTargetGroup")
                .target_groups
                .unwrap_or_default()
                .into_iter()
                .next()
                .and_then(|t| t.target_group_arn)
                .expect("a target group ARN");
            elb.modify_target_group_attributes()
                .target_group_arn(&arn)
                .attributes(
                    TargetGroupAttribute::builder()
                        .key("deregistration_delay.timeout_seconds")
                        .value(DEREGISTRATION_DELAY.as_secs().to_string())
                        .build(),
                )
                .send()
                .await
                .expect("ModifyTargetGroupAttributes");
            tgs.push(arn);
        }
        let listener = elb
            .create_listener()
            .load_balancer_arn(&load_balancer)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .forward_config(
                        ForwardActionConfig::builder()
                            .target_groups(
                                TargetGroupTuple::builder()
                                    .target_group_arn(&tgs[0])
                                    .weight(1)
                                    .build(),
                            )
                            .target_groups(
                                TargetGroupTuple::builder()
                                    .target_group_arn(&tgs[1])
                                    .weight(0)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("CreateListener")
            .listeners
            .unwrap_or_default()
            .into_iter()
            .next()
            .and_then(|l| l.listener_arn)
            .expect("a listener ARN");
        self.auto_scaling_group(spec, &launch_template, &subnets, Some(&tgs[0]))
            .await;
        let mut tgs = tgs.into_iter();
        Fleet {
            vpc,
            subnets,
            security_group,
            launch_template,
            group: spec.name.clone(),
            load_balancer,
            address: format!("{}:80", lb.dns_name.unwrap_or_default()),
            listener,
            tg_a: tgs.next().expect("a"),
            tg_b: tgs.next().expect("b"),
        }
    }

    /// A new version of launch template `lt` launching `image` (nothing
    /// else: what a hand-made version looks like); returns its number.
    pub async fn template_version(&self, lt: &str, image: &str) -> i64 {
        self.ec2(TEST_KEY, TEST_KEY)
            .await
            .create_launch_template_version()
            .launch_template_id(lt)
            .launch_template_data(RequestLaunchTemplateData::builder().image_id(image).build())
            .send()
            .await
            .expect("CreateLaunchTemplateVersion")
            .launch_template_version
            .and_then(|v| v.version_number)
            .expect("a version number")
    }

    /// Points `group` at version `version` of launch template `lt`.
    pub async fn pin_group(&self, group: &str, lt: &str, version: &str) {
        self.autoscaling()
            .await
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(lt)
                    .version(version)
                    .build(),
            )
            .send()
            .await
            .expect("UpdateAutoScalingGroup");
    }

    /// The group's instance ids.
    pub async fn group_instances(&self, group: &str) -> Vec<String> {
        self.autoscaling()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .expect("DescribeAutoScalingGroups")
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .flat_map(|g| g.instances.unwrap_or_default())
            .filter_map(|i| i.instance_id)
            .collect()
    }

    /// Terminates a group member; the group replaces it (moto does at once).
    pub async fn replace_member(&self, instance: &str) {
        self.autoscaling()
            .await
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance)
            .should_decrement_desired_capacity(false)
            .send()
            .await
            .expect("TerminateInstanceInAutoScalingGroup");
    }

    /// The instance ids a target group lists, with their health state.
    pub async fn targets(&self, tg: &str) -> Vec<(String, String)> {
        self.elb()
            .await
            .describe_target_health()
            .target_group_arn(tg)
            .send()
            .await
            .expect("DescribeTargetHealth")
            .target_health_descriptions
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| Some((d.target?.id?, d.target_health?.state?.as_str().to_owned())))
            .collect()
    }
}
