//! roll's IAM policy (`policies/roll.json`) under moto's IAM enforcement:
//! a user with exactly that policy makes every Groups / LoadBalancers /
//! Images call roll makes on a Terraform-made service, and what it called
//! is compared with what the source calls (`tests/policies/scan.rs`): all
//! of it, but for [`NOT_EXERCISED`]. A user with one action taken out is
//! refused with an error naming it.
//!
//! What moto cannot check, and so this does not prove: moto evaluates
//! IAM at the action level against resource `*` (S3: the object's ARN);
//! it ignores the policy's Conditions (the `kiln:roll-group` /
//! `kiln:roll-created` / `kiln:roll-up` tag scoping, `ec2:CreateAction`,
//! `ec2:LaunchTemplate`), and Auto Scaling's check that the caller may
//! `ec2:RunInstances` from the launch template is not made at all. Those
//! are argued in policies/README.md from AWS's documentation.
//! `roll up/down --backend aws` (cloud/src/aws/setup*.rs) is not run here;
//! its actions are held to the policy by `tests/policies`.

use std::collections::{BTreeMap, BTreeSet};

use cloud::conformance::fleet::{self, FleetFixture, Premade};
use cloud::{
    CloudError, GroupName, HealthCheck, ImageId, ListenerId, ScheduledDesired, Target,
    TargetGroupId,
};
use motokit::{FleetSpec, Moto, TEST_KEY};

use crate::support;

#[path = "../policies/scan.rs"]
mod scan;

const BUCKET: &str = "kiln-roll-iam";
const MANIFEST_KEY: &str = "kiln/images/iam/manifest.json";

/// Actions roll calls that no flow here reaches on moto, and why.
const NOT_EXERCISED: &[(&str, &str)] = &[
    (
        "autoscaling:StartInstanceRefresh",
        "moto answers every instance-refresh call with a 500 (not emulated)",
    ),
    (
        "autoscaling:DescribeInstanceRefreshes",
        "moto answers every instance-refresh call with a 500 (not emulated)",
    ),
    (
        "autoscaling:CancelInstanceRefresh",
        "moto answers every instance-refresh call with a 500 (not emulated)",
    ),
    (
        "autoscaling:RollbackInstanceRefresh",
        "moto answers every instance-refresh call with a 500 (not emulated)",
    ),
    (
        "autoscaling:CompleteLifecycleAction",
        "moto answers it with a 500 (its hooks never hold an instance)",
    ),
    (
        "ec2:CreateLaunchTemplateVersion",
        "its description has spaces: MOTO_SIGNATURE_QUIRK",
    ),
    (
        "autoscaling:DescribeTags",
        "the lease reads its tags back after writing them, and the write has spaces: \
         MOTO_SIGNATURE_QUIRK",
    ),
    (
        "autoscaling:CreateAutoScalingGroup",
        "a twin starts with a new template version: MOTO_SIGNATURE_QUIRK",
    ),
    (
        "autoscaling:DeleteAutoScalingGroup",
        "roll deletes only groups it created (twins): see CreateAutoScalingGroup",
    ),
];

/// moto 5.2.5, with IAM enforcement on, refuses a query-protocol request
/// from the Rust SDK whose parameters contain a space (EC2: AuthFailure,
/// others: SignatureDoesNotMatch): it checks the signature before the
/// policy, so such a call says nothing about the policy. Seen with tag
/// values `"x y"`, `" "`, `"a (b)"` (`";@:,/=()` and backticks pass).
/// Without enforcement signatures are not checked, and the fleet tests
/// run these paths.
/// `None` if `r` is Ok, else the refused `action` (which must be the
/// call that failed, and for that reason).
fn moto_quirk_or_ok(what: &str, action: &str, r: cloud::Result<()>) -> Option<String> {
    let e = r.err()?;
    let m = e.to_string();
    let op = action.split(':').nth(1).unwrap_or(action);
    assert!(
        (m.contains("SignatureDoesNotMatch") || m.contains("AuthFailure")) && m.contains(op),
        "{what}: {m}"
    );
    Some(action.to_owned())
}

fn holder() -> cloud::LeaseHolder {
    cloud::LeaseHolder {
        id: "iam-check".into(),
        pid: std::process::id(),
        host: "moto".into(),
        command: "roll out".into(),
        since_ms: cloud::time::now_ms(),
    }
}

fn without(policy: &str, action: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(policy).expect("policy JSON");
    let mut found = false;
    for s in doc["Statement"].as_array_mut().expect("statements") {
        if let Some(list) = s["Action"].as_array_mut() {
            let before = list.len();
            list.retain(|a| a != action);
            found |= list.len() != before;
        }
    }
    assert!(found, "roll.json allows {action}");
    doc.to_string()
}

#[tokio::test]
async fn moto_iam_roll_policy_is_sufficient_and_each_action_matters() {
    let moto = Moto::start();
    let images = moto.seeded_images(2).await;
    let f = moto.fleet(&FleetSpec::new("web", &images[0])).await;

    // An image with a manifest, as bake leaves one (the body need not
    // parse: reading it is what needs s3:GetObject).
    let s3 = moto.s3(TEST_KEY, TEST_KEY).await;
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    s3.put_object()
        .bucket(BUCKET)
        .key(MANIFEST_KEY)
        .body(b"not a manifest".to_vec().into())
        .send()
        .await
        .expect("manifest");
    moto.ec2(TEST_KEY, TEST_KEY)
        .await
        .create_tags()
        .resources(&images[1])
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("kiln:manifest")
                .value(format!("s3://{BUCKET}/{MANIFEST_KEY}"))
                .build(),
        )
        .send()
        .await
        .expect("tag the image");

    let path = motokit::workspace_root().join("policies/roll.json");
    let policy = std::fs::read_to_string(&path).expect("policies/roll.json");
    let roll = moto.iam_user("roll", &policy);
    let minus = moto.iam_user(
        "roll-minus",
        &without(&policy, "elasticloadbalancing:ModifyListener"),
    );
    moto.enforce_iam();

    let (cloud, calls) = support::connect(&moto, BUCKET, (&roll.key, &roll.secret), false).await;
    let (path_, interval, timeout, up, down) = motokit::HEALTH_CHECK;
    let fx = FleetFixture {
        health_check: HealthCheck {
            path: path_.into(),
            interval_ms: interval * 1000,
            timeout_ms: timeout * 1000,
            healthy_threshold: up,
            unhealthy_threshold: down,
        },
        deregistration_delay_ms: motokit::DEREGISTRATION_DELAY.as_millis() as u64,
        premade: Some(Premade {
            listener: ListenerId::new(f.listener.clone()),
            a: TargetGroupId::new(f.tg_a.clone()),
            b: TargetGroupId::new(f.tg_b.clone()),
            like: GroupName::new(f.group.clone()),
        }),
        ..FleetFixture::new(ImageId::new(&images[0]), ImageId::new(&images[1]))
    };

    // Everything roll does to a Terraform-made service, as the roll user,
    // through the seam.
    fleet::missing_things(&cloud, &fx).await;
    let groups = cloud.groups();
    let lbs = cloud.lbs();
    let web = GroupName::new(f.group.clone());
    let listener = ListenerId::new(f.listener.clone());
    let (a, b) = (
        TargetGroupId::new(f.tg_a.clone()),
        TargetGroupId::new(f.tg_b.clone()),
    );
    groups.list_groups().await.expect("list groups");
    let g = groups
        .describe_group(&web)
        .await
        .expect("describe the group");
    lbs.listener(&listener).await.expect("listener");
    lbs.target_group(&a).await.expect("target group");
    let member = g.instances.first().expect("an instance").id.clone();
    let target = [Target {
        instance: member.clone(),
        port: motokit::FLEET_PORT,
    }];
    lbs.register(&b, &target).await.expect("register");
    lbs.targets(&b).await.expect("targets");
    lbs.deregister(&b, &target).await.expect("deregister");
    lbs.switch(&listener, &b).await.expect("switch to b");
    lbs.switch(&listener, &a).await.expect("switch back");
    lbs.set_weights(&listener, &b, 10)
        .await
        .expect("a canary step");
    lbs.switch(&listener, &a).await.expect("back to a alone");
    groups.set_limits(&web, 0, 4).await.expect("limits");
    groups.set_desired(&web, 2).await.expect("desired");
    let later = ScheduledDesired {
        at_ms: cloud::time::now_ms() + 3_600_000,
        desired: 1,
    };
    groups
        .schedule_desired(&web, Some(later))
        .await
        .expect("schedule");
    groups
        .schedule_desired(&web, None)
        .await
        .expect("unschedule");
    groups
        .hold_launches(&web, true)
        .await
        .expect("hold launches");
    groups.hold_launches(&web, false).await.expect("release");
    groups.set_standby(&web, true).await.expect("a standby");
    groups
        .set_standby(&web, false)
        .await
        .expect("serving again");
    // The roll record and the lease live in the group's tags (see
    // MOTO_SIGNATURE_QUIRK for why the lease's write may be refused).
    let mut t = cloud::Tags::new();
    t.insert("kiln:roll-phase".into(), "iam-check".into());
    groups
        .tag_group(&web, &t, &[])
        .await
        .expect("tag the group");
    groups
        .tag_group(&web, &cloud::Tags::new(), &["kiln:roll-phase".into()])
        .await
        .expect("untag the group");
    let mut refused = Vec::new();
    let r = groups.acquire_lease(&web, &holder()).await.map(drop);
    refused.extend(moto_quirk_or_ok(
        "the lease",
        "autoscaling:CreateOrUpdateTags",
        r,
    ));
    let r = groups
        .set_image(&web, &ImageId::new(&images[1]))
        .await
        .map(drop);
    refused.extend(moto_quirk_or_ok(
        "set_image",
        "ec2:CreateLaunchTemplateVersion",
        r,
    ));
    groups
        .terminate_instance(&web, &member, false)
        .await
        .expect("terminate an instance");
    let img = ImageId::new(&images[1]);
    cloud.images().describe(&img).await.expect("describe image");
    match cloud.images().manifest(&img).await {
        Err(CloudError::Corrupt { .. }) => {} // read, and refused as JSON
        other => panic!("the manifest should be read (and not parse): {other:?}"),
    }

    // What ran is what the source says roll calls (outside roll up/down),
    // less what AWS checks on roll's behalf and what moto cannot run.
    // Counted calls include refused ones: an action counts as exercised
    // when it was called more often than moto refused it.
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (k, n) in calls.snapshot() {
        let a = scan::action_of_counted(&k).unwrap_or_else(|| panic!("unknown call {k}"));
        *counted.entry(a).or_default() += n;
    }
    for a in &refused {
        if let Some(n) = counted.get_mut(a) {
            *n -= 1;
        }
    }
    let exercised: BTreeSet<String> = counted
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(a, _)| a)
        .collect();
    let all = scan::scan_dir(&scan::aws_src()).expect("scan");
    let outside_setup: Vec<scan::Call> = all
        .into_iter()
        .filter(|c| !c.file.starts_with("setup"))
        .collect();
    let (by_bin, problems) = scan::actions_by_bin(&outside_setup, scan::MODULES);
    assert!(problems.is_empty(), "{problems:?}");
    let needed: BTreeSet<String> = by_bin[&scan::Bin::Roll].keys().cloned().collect();
    let unknown: Vec<&String> = exercised.difference(&needed).collect();
    assert!(
        unknown.is_empty(),
        "the run called actions the source scan does not see: {unknown:?}"
    );
    let implied: BTreeSet<&str> = scan::IMPLIED.iter().map(|(_, a, _)| *a).collect();
    let expected_unexercised: BTreeSet<&str> = NOT_EXERCISED.iter().map(|(a, _)| *a).collect();
    let unexercised: BTreeSet<&str> = needed
        .iter()
        .map(String::as_str)
        .filter(|a| !exercised.contains(*a))
        // Checked by AWS on roll's behalf, never called: moto does not.
        .filter(|a| !implied.contains(a))
        // Alarm gates run inside a roll, not through the seam calls made
        // here; listed in the policy ahead of (or with) their code.
        .filter(|a| !scan::ROLL_AHEAD.iter().any(|(x, _)| x == a))
        .collect();
    assert_eq!(
        unexercised, expected_unexercised,
        "actions roll calls that this run did not exercise under the policy"
    );

    // One action fewer: the call is refused, naming the operation and the
    // action; an API error, not bad input (roll exits 3).
    let (weak, _) = support::connect(&moto, BUCKET, (&minus.key, &minus.secret), false).await;
    let e = weak
        .lbs()
        .switch(&listener, &b)
        .await
        .expect_err("ModifyListener is not allowed");
    let msg = e.to_string();
    assert!(matches!(e, CloudError::Api { .. }), "{msg}");
    assert!(!e.is_bad_input() && !e.is_not_found(), "{msg}");
    assert!(
        msg.contains("ModifyListener") && msg.contains("us-east-1"),
        "{msg}"
    );
    assert!(
        msg.contains("AccessDenied") || msg.contains("not authorized"),
        "{msg}"
    );
    let l = weak
        .lbs()
        .listener(&listener)
        .await
        .expect("reads still work");
    assert_eq!(l.forward.as_str(), f.tg_a, "nothing switched");
}
