//! `roll up` / `roll down --backend aws` through the real binary on moto:
//! a service made from flags (no Terraform), found again by `roll status`
//! through the roll.toml section `--write-config` wrote; a rerun is a
//! no-op, other arguments exit 2 naming the command; down removes it and
//! converges. `cloud/tests/aws/setup.rs` checks every piece in detail.
#![cfg(feature = "aws")]

#[path = "aws/support.rs"]
mod support;

use std::process::{Command, Output};

use motokit::{Moto, TEST_KEY};
use support::{BUCKET, json, kiln_image, roll_bin};

fn roll(moto: &Moto, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(roll_bin())
        .args([
            "--backend",
            "aws",
            "--state-dir",
            dir.join("state").to_str().expect("utf-8"),
            "--aws-bucket",
            BUCKET,
            "--config",
            dir.join("roll.toml").to_str().expect("utf-8"),
            "--poll",
            "100ms",
        ])
        .args(args)
        .envs(moto.env(TEST_KEY, TEST_KEY))
        .env("KILN_LOG", "warn")
        .output()
        .expect("run roll")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn moto_roll_up_then_status_then_down_through_the_binary() {
    let moto = Moto::start();
    let cloud = support::cloud(&moto).await;
    let image = kiln_image(&moto, &cloud, "searchd", 1).await;
    let (_, subnets) = moto.default_subnets().await;
    let subnets = subnets[..2].join(",");
    let dir = tempfile::tempdir().expect("tempdir");
    let up = [
        "up",
        "--group",
        "svc",
        "--image",
        image.as_str(),
        "--size",
        "2",
        "--subnets",
        &subnets,
        "--timeout",
        "60s",
    ];

    let o = roll(
        &moto,
        dir.path(),
        &[&up[..], &["--write-config", "--json"]].concat(),
    );
    let v = json(&o, 0);
    assert_eq!(v["group"], "svc");
    assert_eq!(v["created"].as_array().map(Vec::len), Some(8), "{v}");
    assert_eq!(v["config_written"], true);
    let listener = v["listener"].as_str().expect("listener").to_owned();
    let toml = std::fs::read_to_string(dir.path().join("roll.toml")).expect("roll.toml");
    assert!(
        toml.contains("[group.svc]") && toml.contains(&listener),
        "{toml}"
    );

    // No subnets (roll.toml has none either): bad input.
    let o = roll(&moto, dir.path(), &up[..7]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--subnets"), "{}", stderr(&o));

    // roll status finds the service through roll.toml.
    let o = roll(&moto, dir.path(), &["status", "--group", "svc", "--json"]);
    let s = json(&o, 0);
    assert_eq!(s["current"], image.as_str(), "{s}");
    assert_eq!(s["listener"]["id"].as_str(), Some(listener.as_str()), "{s}");

    // The same again: the same answer, nothing made.
    let o = roll(
        &moto,
        dir.path(),
        &[&up[..], &["--write-config", "--json"]].concat(),
    );
    let again = json(&o, 0);
    assert_eq!(
        again["created"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    assert_eq!(again["listener"], v["listener"]);
    assert_eq!(again["config_written"], false);

    // Another size: exit 2 naming roll scale; nothing changed.
    let mut other = up.to_vec();
    other[6] = "3";
    let o = roll(&moto, dir.path(), &other);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("roll scale --backend aws --group svc --size 3"),
        "{}",
        stderr(&o)
    );
    assert_eq!(moto.group_instances("svc").await.len(), 2);

    // Down, and down again.
    let o = roll(&moto, dir.path(), &["down", "--group", "svc"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("removed"), "{}", stderr(&o));
    assert!(moto.group_instances("svc").await.is_empty());
    let o = roll(&moto, dir.path(), &["down", "--group", "svc"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to remove"), "{}", stderr(&o));
}

#[tokio::test]
async fn moto_roll_down_refuses_a_terraform_group_with_exit_2() {
    let moto = Moto::start();
    let image = moto.seeded_images(1).await.remove(0);
    moto.fleet(&motokit::FleetSpec::new("web", &image)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("roll.toml"), "").expect("roll.toml");
    let o = roll(&moto, dir.path(), &["down", "--group", "web"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Terraform"), "{}", stderr(&o));
    assert_eq!(moto.group_instances("web").await.len(), 1);
}
