//! `roll up`/`roll down --backend aws` (`cloud::aws::setup`) against a real
//! moto server: everything made is described back (launch data, ingress,
//! the group's pin, the listener's weights, health checks, tags), a rerun
//! creates nothing, a run failed mid-way converges when rerun, and down
//! removes exactly what up tagged (a same-named or same-group resource
//! made directly with the SDK survives).
//!
//! What moto cannot show: health transitions (targets are healthy at
//! once), ENIs that linger after termination (DependencyViolation on
//! DeleteSecurityGroup: the retry is bounded but never exercised here),
//! and a balancer that stays `provisioning` for minutes.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, LaunchTemplateHttpTokensState, VolumeType};
use cloud::aws::setup::{Change, Outcome, PART, ROLL_UP, ServiceInfo, ServiceSpec, Setup};
use cloud::aws::{ApiCalls, AwsOptions};
use cloud::{GroupName, HealthCheck, ImageId};
use motokit::{Fault, FaultProxy, FleetSpec, Moto, Reply, TEST_KEY};

use crate::support::FAST;

async fn setup_on(endpoint: String) -> Setup {
    Setup::connect(AwsOptions {
        region: Some(motokit::REGION.into()),
        endpoint_url: Some(endpoint),
        static_credentials: Some((TEST_KEY.into(), TEST_KEY.into())),
        retries: false,
        wait: FAST,
        ..AwsOptions::default()
    })
    .await
    .expect("connect to moto")
}

async fn spec(moto: &Moto, group: &str) -> ServiceSpec {
    let image = moto.seeded_images(2).await.remove(0);
    let (_, subnets) = moto.default_subnets().await;
    ServiceSpec {
        group: GroupName::from(group),
        image: ImageId::new(image),
        size: 2,
        vpc: None,
        subnets: subnets.into_iter().take(2).collect(),
        lb_subnets: Vec::new(),
        load_balancer: None,
        internet_facing: false,
        port: 80,
        service_port: 8080,
        instance_type: "t3.small".into(),
        certificate_arn: None,
        tls_policy: cloud::aws::setup::TLS_POLICY.into(),
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

fn ready(o: Outcome) -> ServiceInfo {
    match o {
        Outcome::Ready(i) => *i,
        Outcome::Differs(d) => panic!("differs: {d:?}"),
    }
}

/// Calls that change something, by operation, since `before`.
fn writes(calls: &ApiCalls, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls
        .snapshot()
        .into_iter()
        .filter(|(k, _)| {
            let op = k.rsplit('.').next().unwrap_or("");
            !op.starts_with("Describe")
        })
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k.rsplit('.').next().unwrap_or("").to_owned(), v - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn tag_map_ec2(t: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    t.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect()
}

async fn elb_tags(moto: &Moto, arn: &str) -> BTreeMap<String, String> {
    moto.elb()
        .await
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .expect("DescribeTags")
        .tag_descriptions
        .unwrap_or_default()
        .into_iter()
        .flat_map(|d| d.tags.unwrap_or_default())
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .collect()
}

fn assert_ours(t: &BTreeMap<String, String>, group: &str, part: &str) {
    assert_eq!(t.get(ROLL_UP).map(String::as_str), Some(group), "{t:?}");
    assert_eq!(
        t.get(cloud::tags::ROLL_GROUP).map(String::as_str),
        Some(group),
        "{t:?}"
    );
    assert_eq!(t.get(PART).map(String::as_str), Some(part), "{t:?}");
}

/// What exists of `group`'s pieces, counted by tag and by name.
#[derive(Debug, PartialEq, Eq)]
struct Pieces {
    groups: usize,
    templates: usize,
    security_groups: usize,
    target_groups: usize,
    load_balancers: usize,
    listeners: usize,
}

async fn pieces(moto: &Moto, group: &str) -> Pieces {
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let elb = moto.elb().await;
    let tagged = Filter::builder()
        .name(format!("tag:{ROLL_UP}"))
        .values(group)
        .build();
    let templates = ec2
        .describe_launch_templates()
        .filters(tagged.clone())
        .send()
        .await
        .expect("DescribeLaunchTemplates")
        .launch_templates
        .unwrap_or_default()
        .len();
    let security_groups = ec2
        .describe_security_groups()
        .filters(tagged)
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups
        .unwrap_or_default()
        .len();
    let groups = group_count(moto, group).await;
    let tgs = elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups")
        .target_groups
        .unwrap_or_default();
    let mut target_groups = 0;
    for t in &tgs {
        if elb_tags(moto, t.target_group_arn.as_deref().unwrap_or(""))
            .await
            .get(ROLL_UP)
            .is_some_and(|v| v == group)
        {
            target_groups += 1;
        }
    }
    let lbs = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("DescribeLoadBalancers")
        .load_balancers
        .unwrap_or_default();
    let (mut load_balancers, mut listeners) = (0, 0);
    for l in &lbs {
        let arn = l.load_balancer_arn.clone().unwrap_or_default();
        if elb_tags(moto, &arn)
            .await
            .get(ROLL_UP)
            .is_some_and(|v| v == group)
        {
            load_balancers += 1;
        }
        for li in elb
            .describe_listeners()
            .load_balancer_arn(&arn)
            .send()
            .await
            .expect("DescribeListeners")
            .listeners
            .unwrap_or_default()
        {
            if elb_tags(moto, li.listener_arn.as_deref().unwrap_or(""))
                .await
                .get(ROLL_UP)
                .is_some_and(|v| v == group)
            {
                listeners += 1;
            }
        }
    }
    Pieces {
        groups,
        templates,
        security_groups,
        target_groups,
        load_balancers,
        listeners,
    }
}

/// 1 if the Auto Scaling group exists with roll up's tag, else 0.
async fn group_count(moto: &Moto, group: &str) -> usize {
    moto.autoscaling()
        .await
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups")
        .auto_scaling_groups
        .unwrap_or_default()
        .iter()
        .filter(|g| {
            g.tags()
                .iter()
                .any(|t| t.key.as_deref() == Some(ROLL_UP) && t.value.as_deref() == Some(group))
        })
        .count()
}

const ALL: Pieces = Pieces {
    groups: 1,
    templates: 1,
    security_groups: 2,
    target_groups: 2,
    load_balancers: 1,
    listeners: 1,
};

const NONE: Pieces = Pieces {
    groups: 0,
    templates: 0,
    security_groups: 0,
    target_groups: 0,
    load_balancers: 0,
    listeners: 0,
};

#[tokio::test]
async fn moto_setup_up_makes_every_piece_as_documented_and_a_rerun_makes_nothing() {
    let moto = Moto::start();
    let s = setup_on(moto.endpoint()).await;
    let spec = spec(&moto, "web").await;
    let info = ready(s.up(&spec).await.expect("roll up"));
    assert_eq!(info.created.len(), 8, "{:?}", info.created);
    assert_eq!(pieces(&moto, "web").await, ALL);
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let elb = moto.elb().await;

    // The launch template's version 1.
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_id(&info.launch_template)
        .versions("1")
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions")
        .launch_template_versions
        .unwrap_or_default()
        .remove(0);
    let d = v.launch_template_data.expect("data");
    assert_eq!(d.image_id.as_deref(), Some(spec.image.as_str()));
    assert_eq!(
        d.instance_type.as_ref().map(|t| t.as_str()),
        Some("t3.small")
    );
    let ni = &d.network_interfaces()[0];
    assert_eq!(ni.associate_public_ip_address, Some(false), "no public IP");
    assert_eq!(
        ni.groups(),
        std::slice::from_ref(&info.instance_security_group)
    );
    let md = d.metadata_options.as_ref().expect("metadata options");
    assert_eq!(
        md.http_tokens,
        Some(LaunchTemplateHttpTokensState::Required)
    );
    assert_eq!(md.http_put_response_hop_limit, Some(1));
    let root_dev = ec2
        .describe_images()
        .image_ids(spec.image.as_str())
        .send()
        .await
        .expect("DescribeImages")
        .images()[0]
        .root_device_name
        .clone()
        .expect("a root device");
    let bdm = &d.block_device_mappings()[0];
    assert_eq!(bdm.device_name.as_deref(), Some(root_dev.as_str()));
    let ebs = bdm.ebs.as_ref().expect("ebs");
    assert_eq!(ebs.encrypted, Some(true));
    assert_eq!(ebs.volume_type, Some(VolumeType::Gp3));
    let lt = ec2
        .describe_launch_templates()
        .launch_template_ids(&info.launch_template)
        .send()
        .await
        .expect("DescribeLaunchTemplates")
        .launch_templates
        .unwrap_or_default()
        .remove(0);
    assert_ours(&tag_map_ec2(lt.tags()), "web", "template");

    // Security groups: the instances admit the service port from the
    // balancer's group only; the balancer the listener port from the VPC.
    let sgs = ec2
        .describe_security_groups()
        .group_ids(&info.instance_security_group)
        .group_ids(&info.balancer_security_groups[0])
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups
        .unwrap_or_default();
    let inst = sgs
        .iter()
        .find(|g| g.group_id.as_deref() == Some(info.instance_security_group.as_str()))
        .expect("instances' group");
    assert_ours(&tag_map_ec2(inst.tags()), "web", "instances-sg");
    let perms = inst.ip_permissions();
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert_eq!(
        (perms[0].from_port, perms[0].to_port),
        (Some(8080), Some(8080))
    );
    assert!(perms[0].ip_ranges().is_empty(), "{perms:?}");
    assert!(perms[0].ipv6_ranges().is_empty(), "{perms:?}");
    let from: Vec<_> = perms[0]
        .user_id_group_pairs()
        .iter()
        .filter_map(|p| p.group_id.clone())
        .collect();
    assert_eq!(from, info.balancer_security_groups);
    let lbsg = sgs
        .iter()
        .find(|g| g.group_id.as_deref() == Some(info.balancer_security_groups[0].as_str()))
        .expect("balancer's group");
    assert_ours(&tag_map_ec2(lbsg.tags()), "web", "balancer-sg");
    let cidr = ec2
        .describe_vpcs()
        .vpc_ids(&info.vpc)
        .send()
        .await
        .expect("DescribeVpcs")
        .vpcs()[0]
        .cidr_block
        .clone()
        .expect("cidr");
    let lp = lbsg.ip_permissions();
    assert_eq!(lp.len(), 1, "{lp:?}");
    assert_eq!(lp[0].from_port, Some(80));
    assert_eq!(
        lp[0].ip_ranges()[0].cidr_ip.as_deref(),
        Some(cidr.as_str()),
        "internal: the VPC only"
    );

    // Target groups: /ready, matcher 200, the delay; tagged.
    for (arn, part) in info.target_groups.iter().zip(["tg-a", "tg-b"]) {
        let t = elb
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
            .expect("DescribeTargetGroups")
            .target_groups
            .unwrap_or_default()
            .remove(0);
        assert_eq!(t.health_check_path.as_deref(), Some("/ready"));
        assert_eq!(t.port, Some(8080));
        assert_eq!(t.health_check_interval_seconds, Some(10));
        assert_eq!(
            t.matcher.as_ref().and_then(|m| m.http_code.as_deref()),
            Some("200")
        );
        let delay = elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.key.as_deref() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value);
        assert_eq!(delay.as_deref(), Some("30"));
        assert_ours(&elb_tags(&moto, arn).await, "web", part);
    }

    // The balancer (internal) and the listener's weighted forward.
    let lb = elb
        .describe_load_balancers()
        .load_balancer_arns(&info.load_balancer)
        .send()
        .await
        .expect("DescribeLoadBalancers")
        .load_balancers
        .unwrap_or_default()
        .remove(0);
    assert_eq!(lb.scheme.as_ref().map(|s| s.as_str()), Some("internal"));
    assert_ours(
        &elb_tags(&moto, &info.load_balancer).await,
        "web",
        "balancer",
    );
    let l = elb
        .describe_listeners()
        .listener_arns(&info.listener)
        .send()
        .await
        .expect("DescribeListeners")
        .listeners
        .unwrap_or_default()
        .remove(0);
    assert_eq!(l.port, Some(80));
    assert_eq!(l.protocol.as_ref().map(|p| p.as_str()), Some("HTTP"));
    let weights: Vec<(String, i32)> = l.default_actions()[0]
        .forward_config
        .as_ref()
        .expect("a weighted forward")
        .target_groups()
        .iter()
        .map(|t| (t.target_group_arn.clone().unwrap(), t.weight.unwrap()))
        .collect();
    assert_eq!(
        weights,
        vec![
            (info.target_groups[0].clone(), 1),
            (info.target_groups[1].clone(), 0)
        ]
    );
    assert_ours(&elb_tags(&moto, &info.listener).await, "web", "listener");

    // The group: numeric version 1, the subnets, target group a, ELB
    // health checks, the size; tagged (roll may delete it).
    let g = moto
        .autoscaling()
        .await
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web")
        .send()
        .await
        .expect("DescribeAutoScalingGroups")
        .auto_scaling_groups
        .unwrap_or_default()
        .remove(0);
    let pin = g.launch_template.as_ref().expect("a launch template");
    assert_eq!(pin.version.as_deref(), Some("1"), "numeric, never $Latest");
    assert_eq!(
        pin.launch_template_id.as_deref(),
        Some(info.launch_template.as_str())
    );
    let mut subnets: Vec<&str> = g
        .vpc_zone_identifier
        .as_deref()
        .unwrap()
        .split(',')
        .collect();
    subnets.sort();
    let mut want: Vec<&str> = spec.subnets.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(subnets, want);
    assert_eq!(g.target_group_arns(), [info.target_groups[0].clone()]);
    assert_eq!(g.health_check_type.as_deref(), Some("ELB"));
    assert_eq!(g.health_check_grace_period, Some(60));
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (Some(2), Some(2), Some(2))
    );
    let gt: BTreeMap<String, String> = g
        .tags()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
        .collect();
    assert_ours(&gt, "web", "group");
    assert_eq!(
        gt.get(cloud::aws::ROLL_CREATED).map(String::as_str),
        Some("true")
    );
    let registered = moto.targets(&info.target_groups[0]).await;
    assert_eq!(registered.len(), 2, "{registered:?}");

    // The same again: the same answer, not one call that changes anything.
    let calls = s.calls();
    let before = calls.snapshot();
    let again = ready(s.up(&spec).await.expect("roll up again"));
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert_eq!(
        ServiceInfo {
            created: info.created.clone(),
            ..again
        },
        info
    );
    assert_eq!(writes(&calls, &before), BTreeMap::new());
    assert_eq!(pieces(&moto, "web").await, ALL);

    // Other arguments: nothing changes; what differs and what changes it.
    let other_image = ImageId::new(moto.seeded_images(2).await.remove(1));
    let before = calls.snapshot();
    let o = s
        .up(&ServiceSpec {
            size: 3,
            image: other_image.clone(),
            port: 8081,
            ..spec.clone()
        })
        .await
        .expect("differs");
    let Outcome::Differs(d) = o else {
        panic!("{o:?}")
    };
    let what: Vec<(&str, Change)> = d.iter().map(|d| (d.what.as_str(), d.change)).collect();
    assert!(what.contains(&("size", Change::RollScale)), "{d:?}");
    assert!(what.contains(&("image", Change::RollOut)), "{d:?}");
    assert!(what.contains(&("listener port", Change::Recreate)), "{d:?}");
    assert_eq!(writes(&calls, &before), BTreeMap::new());
}

#[tokio::test]
async fn moto_setup_down_removes_exactly_what_up_tagged_and_converges() {
    let moto = Moto::start();
    let s = setup_on(moto.endpoint()).await;
    let spec = spec(&moto, "web").await;
    let info = ready(s.up(&spec).await.expect("roll up"));
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    // Made directly, not by roll up: a security group of the same name in
    // another VPC, a launch template and a group tagged for the service
    // but not by roll up.
    let other_vpc = ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc");
    let same_name = ec2
        .create_security_group()
        .group_name("web-instances")
        .description("not roll's")
        .vpc_id(&other_vpc)
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id
        .expect("id");
    let mut fleet = FleetSpec::new("web-tf", spec.image.as_str());
    fleet.group_tags = vec![(cloud::tags::ROLL_GROUP.into(), "web".into())];
    let tf = moto.fleet(&fleet).await;

    let removed = s.down(&GroupName::from("web")).await.expect("roll down");
    assert_eq!(removed.removed.len(), 8, "{:?}", removed.removed);
    assert_eq!(pieces(&moto, "web").await, NONE);
    // Not even the names are left.
    assert!(
        moto.elb()
            .await
            .describe_load_balancers()
            .load_balancer_arns(&info.load_balancer)
            .send()
            .await
            .is_err()
    );
    // What roll up did not make is all there.
    let there = ec2
        .describe_security_groups()
        .group_ids(&same_name)
        .group_ids(&tf.security_group)
        .send()
        .await
        .expect("the same-named group survives")
        .security_groups
        .unwrap_or_default();
    assert_eq!(there.len(), 2);
    assert_eq!(moto.group_instances("web-tf").await.len(), 1);
    assert_eq!(moto.targets(&tf.tg_a).await.len(), 1);
    // Again: nothing to do, nothing fails.
    let calls = s.calls();
    let before = calls.snapshot();
    let again = s.down(&GroupName::from("web")).await.expect("down again");
    assert!(again.removed.is_empty(), "{:?}", again.removed);
    assert_eq!(writes(&calls, &before), BTreeMap::new());
    // And up again after down: a whole new service.
    ready(s.up(&spec).await.expect("up after down"));
    assert_eq!(pieces(&moto, "web").await, ALL);
}

#[tokio::test]
async fn moto_setup_never_touches_a_group_it_did_not_make() {
    let moto = Moto::start();
    let s = setup_on(moto.endpoint()).await;
    let image = moto.seeded_images(1).await.remove(0);
    let tf = moto.fleet(&FleetSpec::new("web", &image)).await;
    let e = s.down(&GroupName::from("web")).await.expect_err("refused");
    assert!(e.is_bad_input(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("Terraform") && msg.contains(ROLL_UP), "{msg}");
    let e = s
        .up(&spec(&moto, "web").await)
        .await
        .expect_err("refused too");
    assert!(e.is_bad_input(), "{e}");
    assert_eq!(moto.group_instances("web").await.len(), 1);
    assert_eq!(moto.targets(&tf.tg_a).await.len(), 1);
    assert_eq!(pieces(&moto, "web").await, NONE);
}

#[tokio::test]
async fn moto_setup_a_run_failed_mid_way_converges_when_rerun() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let s = setup_on(proxy.endpoint()).await;
    let spec = spec(&moto, "web").await;
    proxy.on(
        "CreateListener",
        motokit::REGION,
        Fault::Fail(Reply::ec2_error("InternalFailure", "injected")),
    );
    let e = s.up(&spec).await.expect_err("CreateListener fails");
    assert!(e.to_string().contains("CreateListener"), "{e}");
    assert_eq!(
        pieces(&moto, "web").await,
        Pieces {
            groups: 0,
            listeners: 0,
            ..ALL
        }
    );
    proxy.clear();
    let calls = s.calls();
    let before = calls.snapshot();
    let info = ready(s.up(&spec).await.expect("rerun"));
    assert_eq!(pieces(&moto, "web").await, ALL);
    let w = writes(&calls, &before);
    assert_eq!(
        w,
        BTreeMap::from([
            ("CreateAutoScalingGroup".to_owned(), 1),
            ("CreateListener".to_owned(), 1),
        ]),
        "only what was missing: {:?}",
        info.created
    );
}

#[tokio::test]
async fn moto_setup_https_listener_with_a_certificate() {
    let moto = Moto::start();
    let cert = acm_certificate(&moto, "search.example.com");
    let s = setup_on(moto.endpoint()).await;
    let spec = ServiceSpec {
        port: 443,
        certificate_arn: Some(cert.clone()),
        internet_facing: true,
        ..spec(&moto, "api").await
    };
    let info = ready(s.up(&spec).await.expect("roll up https"));
    assert!(info.url.starts_with("https://"), "{}", info.url);
    let l = moto
        .elb()
        .await
        .describe_listeners()
        .listener_arns(&info.listener)
        .send()
        .await
        .expect("DescribeListeners")
        .listeners
        .unwrap_or_default()
        .remove(0);
    assert_eq!(l.protocol.as_ref().map(|p| p.as_str()), Some("HTTPS"));
    assert_eq!(l.port, Some(443));
    assert_eq!(l.ssl_policy.as_deref(), Some(cloud::aws::setup::TLS_POLICY));
    assert_eq!(
        l.certificates()[0].certificate_arn.as_deref(),
        Some(cert.as_str())
    );
    // Internet-facing: the listener port from anywhere, the instances
    // still only from the balancer.
    let ec2 = moto.ec2(TEST_KEY, TEST_KEY).await;
    let lbsg = ec2
        .describe_security_groups()
        .group_ids(&info.balancer_security_groups[0])
        .send()
        .await
        .expect("DescribeSecurityGroups")
        .security_groups()[0]
        .clone();
    assert_eq!(
        lbsg.ip_permissions()[0].ip_ranges()[0].cidr_ip.as_deref(),
        Some("0.0.0.0/0")
    );
    assert_eq!(lbsg.ip_permissions()[0].from_port, Some(443));
    // HTTP where HTTPS exists: differs, nothing changed.
    let o = s
        .up(&ServiceSpec {
            certificate_arn: None,
            ..spec.clone()
        })
        .await
        .expect("differs");
    assert!(matches!(o, Outcome::Differs(_)), "{o:?}");
    s.down(&GroupName::from("api")).await.expect("down");
    assert_eq!(pieces(&moto, "api").await, NONE);
}

/// An ACM certificate (moto's RequestCertificate; ACM is not among kiln's
/// SDK crates, so a plain JSON request). moto checks that an HTTPS
/// listener's certificate exists in ACM.
fn acm_certificate(moto: &Moto, domain: &str) -> String {
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/acm/aws4_request, \
                SignedHeaders=host, Signature=0";
    let body = format!("{{\"DomainName\":\"{domain}\"}}");
    let (status, out) = moto
        .http(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "CertificateManager.RequestCertificate"),
                ("Authorization", auth),
            ],
            body.as_bytes(),
        )
        .expect("ACM request");
    let out = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(status, 200, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    v["CertificateArn"].as_str().expect("an ARN").to_owned()
}
