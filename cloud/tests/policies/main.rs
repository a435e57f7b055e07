//! policies/roll.json and policies/bake.json allow exactly the actions the
//! code calls: the actions are read from the aws backend's source (see
//! `scan.rs`), assigned to bake or roll by module, and compared with the
//! policies' Action lists. When a module gains a call (alarms, `roll up
//! --backend aws`), this fails until the policy lists it; when a call
//! goes away, until the policy drops it.
//!
//! moto's IAM enforcement with exactly these files is tested in
//! `tests/aws/iam.rs` (roll) and `bake/tests/aws_bake.rs` (bake).

mod scan;

use std::collections::BTreeMap;

use scan::{Bin, Call, Module, Uses};

fn check(name: &str, bin: Bin, omitted: &[(&str, &str)], ahead: &[(&str, &str)]) {
    let needed = scan::needed_by_bin();
    let allowed = scan::policy_actions(&scan::read_policy(name))
        .unwrap_or_else(|e| panic!("policies/{name}.json: {e}"));
    if let Err(msg) = scan::compare(name, &needed[&bin], &allowed, omitted, ahead) {
        panic!("{msg}");
    }
    for (a, _) in ahead {
        assert!(
            allowed.contains_key(*a),
            "{a} is listed as ahead of the code for {name}.json, which does not allow it"
        );
    }
}

#[test]
fn roll_policy_allows_exactly_what_roll_calls() {
    check("roll", Bin::Roll, scan::ROLL_OMITTED, scan::ROLL_AHEAD);
}

#[test]
fn bake_policy_allows_exactly_what_bake_calls() {
    check("bake", Bin::Bake, scan::BAKE_OMITTED, scan::BAKE_AHEAD);
}

/// The scan finds the calls everyone knows are there (a scanner that
/// found nothing would make both policies "equal" to empty sets).
#[test]
fn the_scan_finds_known_calls_of_both_binaries() {
    let needed = scan::needed_by_bin();
    for (bin, action) in [
        (Bin::Roll, "autoscaling:UpdateAutoScalingGroup"),
        (Bin::Roll, "autoscaling:DescribeTags"),
        (Bin::Roll, "elasticloadbalancing:ModifyListener"),
        (Bin::Roll, "elasticloadbalancing:DeregisterTargets"),
        (Bin::Roll, "ec2:CreateLaunchTemplateVersion"),
        (Bin::Roll, "ec2:RunInstances"),
        (Bin::Roll, "s3:GetObject"),
        (Bin::Bake, "ec2:RunInstances"),
        (Bin::Bake, "ec2:DeleteSnapshot"),
        (Bin::Bake, "s3:ListBucket"),
        (Bin::Bake, "s3:PutObjectTagging"),
        (Bin::Bake, "ssm:GetParameter"),
        (Bin::Bake, "autoscaling:DescribeAutoScalingGroups"),
    ] {
        assert!(
            needed[&bin].contains_key(action),
            "{bin:?} should need {action}: {:?}",
            needed[&bin].keys().collect::<Vec<_>>()
        );
    }
    for (bin, action) in [
        (Bin::Roll, "ec2:TerminateInstances"),
        (Bin::Roll, "s3:PutObject"),
        (Bin::Bake, "elasticloadbalancing:ModifyListener"),
        (Bin::Bake, "autoscaling:UpdateAutoScalingGroup"),
    ] {
        assert!(
            !needed[&bin].contains_key(action),
            "{bin:?} needs no {action}"
        );
    }
}

/// Each single action taken out of either policy fails the comparison,
/// naming the action and where the code calls it.
#[test]
fn removing_any_one_action_from_a_policy_is_caught() {
    let needed = scan::needed_by_bin();
    for (name, bin, omitted, ahead) in [
        ("roll", Bin::Roll, scan::ROLL_OMITTED, scan::ROLL_AHEAD),
        ("bake", Bin::Bake, scan::BAKE_OMITTED, scan::BAKE_AHEAD),
    ] {
        let allowed = scan::policy_actions(&scan::read_policy(name)).expect("policy");
        for action in allowed.keys() {
            if ahead.iter().any(|(a, _)| a == action) {
                continue;
            }
            let mut fewer = allowed.clone();
            fewer.remove(action);
            let err = scan::compare(name, &needed[&bin], &fewer, omitted, ahead)
                .expect_err(&format!("{name}.json without {action} must fail"));
            assert!(
                err.contains(action) && err.contains("The code calls"),
                "{err}"
            );
        }
        let mut more = allowed.clone();
        more.insert("ec2:DeleteVpc".into(), "Extra".into());
        let err = scan::compare(name, &needed[&bin], &more, omitted, ahead)
            .expect_err("an action no code calls");
        assert!(
            err.contains("ec2:DeleteVpc") && err.contains("no code calls"),
            "{err}"
        );
    }
}

#[test]
fn an_omitted_action_granted_anyway_is_caught() {
    let needed: BTreeMap<String, Vec<String>> =
        [("s3:CreateBucket".to_owned(), vec!["x".to_owned()])].into();
    let allowed: BTreeMap<String, String> = [("s3:CreateBucket".to_owned(), "S".to_owned())].into();
    let err = scan::compare(
        "t",
        &needed,
        &allowed,
        &[("s3:CreateBucket", "opt-in")],
        &[],
    )
    .expect_err("granted although left out on purpose");
    assert!(err.contains("left out on purpose"), "{err}");
    assert!(
        scan::compare(
            "t",
            &needed,
            &BTreeMap::new(),
            &[("s3:CreateBucket", "o")],
            &[]
        )
        .is_ok()
    );
}

/// Mutating actions are scoped: a Condition or a Resource narrower than
/// `*`, except creations (nothing to hold a tag yet) listed here with why.
#[test]
fn mutating_actions_are_scoped() {
    const UNSCOPED: &[(&str, &str)] = &[
        ("bake", "ec2:RunInstances"),
        ("bake", "ec2:CreateSecurityGroup"),
        ("bake", "ec2:CreateImage"),
        ("bake", "ec2:CopyImage"),
        // Its TagSpecification is authorized as ec2:CreateTags with
        // ec2:CreateAction (scoped); a condition on the create itself
        // would also be evaluated against the VPC, which has no such tag.
        ("roll", "ec2:CreateSecurityGroup"),
    ];
    for name in ["roll", "bake"] {
        let doc = scan::read_policy(name);
        for s in doc["Statement"].as_array().expect("statements") {
            let sid = s["Sid"].as_str().unwrap_or("?");
            let scoped = s.get("Condition").is_some() || s["Resource"] != "*";
            let actions: Vec<&str> = match &s["Action"] {
                serde_json::Value::String(a) => vec![a.as_str()],
                v => v
                    .as_array()
                    .expect("actions")
                    .iter()
                    .filter_map(|a| a.as_str())
                    .collect(),
            };
            for a in actions {
                let op = a.split(':').nth(1).unwrap_or(a);
                let reads = ["Describe", "Get", "List"]
                    .iter()
                    .any(|p| op.starts_with(p));
                if reads || scoped || UNSCOPED.contains(&(name, a)) {
                    continue;
                }
                panic!("{name}.json {sid}: {a} changes things on Resource * without a Condition");
            }
        }
    }
}

// ---- the scanner itself --------------------------------------------------

fn scan(src: &str) -> (Vec<String>, Vec<String>) {
    let (calls, errors) = scan::scan_source("t.rs", src);
    let mut actions: Vec<String> = calls
        .iter()
        .flat_map(|c: &Call| std::iter::once(c.action.clone()).chain(c.extra.clone()))
        .collect();
    actions.sort();
    (actions, errors)
}

#[test]
fn scanner_follows_chains_across_lines_and_bindings() {
    let src = r#"
        async fn a(&self) {
            let out = self
                .ctx
                .autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name.as_str())
                .send()
                .await?;
            let asg = &self.ctx.autoscaling;
            asg.put_lifecycle_hook().name(x).send().await;
            let mut req = ctx.ec2.describe_subnets();
            if x { req = req.filters(f); }
            req.send().await;
            let dest = ctx.ec2_in(region);
            dest.copy_image().tag_specifications(t).send().await;
            ctx.s3.put_object().bucket(b).tagging(s3_tagging(&t)).send().await;
            let url = ctx.s3.get_object().key(k).presigned(ttl).await;
            ctx.elb.modify_listener().send().await; // ctx.s3.delete_bucket().send()
            let s = "ctx.ec2.terminate_instances().send()";
        }
        async fn b(ec2: &aws_sdk_ec2::Client) {
            match ec2.deregister_image().image_id(id).send().await {}
            ctx.s3.list_objects_v2().send().await;
        }
        #[cfg(test)]
        mod tests {
            fn t() { ctx.ec2.delete_vpc().send(); }
        }
    "#;
    let (actions, errors) = scan(src);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        actions,
        [
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:PutLifecycleHook",
            "ec2:CopyImage",
            "ec2:CreateTags",
            "ec2:DeregisterImage",
            "ec2:DescribeSubnets",
            "elasticloadbalancing:ModifyListener",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "s3:PutObjectTagging",
        ]
    );
}

#[test]
fn scanner_refuses_a_send_it_cannot_attribute() {
    let (_, errors) = scan("fn f(c: &Thing) { c.describe_images().send().await; }");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("t.rs:1") && errors[0].contains("`c`"),
        "{errors:?}"
    );
    let (_, errors) = scan("fn f() { make().describe_images().send().await; }");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn operations_map_to_iam_actions() {
    assert_eq!(scan::iam_action("s3", "list_objects_v2"), "s3:ListBucket");
    assert_eq!(scan::iam_action("s3", "head_object"), "s3:GetObject");
    assert_eq!(
        scan::iam_action("elasticloadbalancing", "describe_target_health"),
        "elasticloadbalancing:DescribeTargetHealth"
    );
    assert_eq!(
        scan::iam_action("autoscaling", "terminate_instance_in_auto_scaling_group"),
        "autoscaling:TerminateInstanceInAutoScalingGroup"
    );
    assert_eq!(
        scan::iam_action("cloudwatch", "describe_alarms"),
        "cloudwatch:DescribeAlarms"
    );
}

#[test]
fn every_module_is_assigned_and_shared_lists_are_checked() {
    let call = |file: &str, action: &str| Call {
        file: file.into(),
        line: 1,
        action: action.into(),
        extra: vec![],
    };
    let modules = [
        Module {
            pattern: "a.rs",
            bake: Some(Uses::All),
            roll: Some(Uses::Only(&["ec2:X"])),
        },
        Module {
            pattern: "setup*",
            bake: None,
            roll: Some(Uses::All),
        },
    ];
    let calls = [
        call("a.rs", "ec2:X"),
        call("a.rs", "ec2:Y"),
        call("setup/lb.rs", "elasticloadbalancing:CreateListener"),
        call("setup_asg.rs", "autoscaling:CreateAutoScalingGroup"),
    ];
    let (by_bin, problems) = scan::actions_by_bin(&calls, &modules);
    assert!(problems.is_empty(), "{problems:?}");
    let keys = |b: Bin| by_bin[&b].keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(Bin::Bake), ["ec2:X", "ec2:Y"]);
    assert_eq!(
        keys(Bin::Roll),
        [
            "autoscaling:CreateAutoScalingGroup",
            "ec2:CreateTags",
            "ec2:RunInstances",
            "ec2:X",
            "elasticloadbalancing:CreateListener",
        ],
        "CreateAutoScalingGroup implies what Auto Scaling checks for the caller"
    );

    let (_, problems) = scan::actions_by_bin(&[call("new.rs", "ec2:Z")], &modules);
    assert!(
        problems[0].contains("new.rs") && problems[0].contains("MODULES"),
        "{problems:?}"
    );
    let (_, problems) = scan::actions_by_bin(&[call("a.rs", "ec2:Y")], &modules);
    assert!(
        problems[0].contains("ec2:X"),
        "a stale Only list: {problems:?}"
    );
}
