//! `roll out --strategy instance-refresh` on moto, the real binary.
//!
//! moto 5.2.5 does not emulate instance refresh: StartInstanceRefresh,
//! DescribeInstanceRefreshes, CancelInstanceRefresh and
//! RollbackInstanceRefresh all answer 500. So this shows only what moto
//! can: that roll gets as far as StartInstanceRefresh (the record written,
//! the launch-template version made, the group left on its own version),
//! fails naming the call with exit 3, and that the roll it recorded is
//! still one `roll back` undoes. The refresh itself — replacement,
//! checkpoints, auto rollback, adoption after `kill -9`, kiln's gate on
//! top — is tested on the scripted fake (`tests/refresh.rs`).

#[path = "aws/support.rs"]
mod support;

use support::{Fx, json};

/// moto cannot: emulate the refresh (a 500), so nothing is replaced.
#[tokio::test(flavor = "multi_thread")]
async fn moto_instance_refresh_reaches_start_instance_refresh_and_fails_naming_it() {
    let fx = Fx::new(2).await;
    let out = fx.roll(&[
        "out",
        "--group",
        "web",
        "--image",
        fx.v2.as_str(),
        "--strategy",
        "instance-refresh",
        "--checkpoints",
        "50%",
        "--checkpoint-delay",
        "1m",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("StartInstanceRefresh"), "{stderr}");
    // Nothing replaced, the group still on version 1.
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);
    let g = fx.group("web").await.expect("web");
    assert_eq!(g.launch_template().and_then(|l| l.version()), Some("1"));
    // Recorded before the call: a rerun would resume (a refresh may have
    // started); no refresh id, since none was answered.
    let t = fx.tags_of("web").await;
    assert_eq!(
        t.get("kiln:roll-strategy").map(String::as_str),
        Some("instance-refresh"),
        "{t:?}"
    );
    assert!(!t.contains_key("kiln:roll-refresh"), "{t:?}");
    // Another kind of roll out is refused while it stands (exit 2).
    let other = fx.roll(&["out", "--group", "web", "--image", fx.v2.as_str()]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("instance refresh roll"), "{stderr}");
    // roll back undoes it: no refresh id recorded, so the rolling steps
    // (nothing to replace) end it, with no refresh call at all.
    let back = fx.roll(&["back", "--group", "web", "--json"]);
    let v = json(&back, 0);
    assert_eq!(v["outcome"], "reverted", "{v}");
    let t = fx.tags_of("web").await;
    assert!(!t.keys().any(|k| k.starts_with("kiln:roll-id")), "{t:?}");
    assert_eq!(fx.images_of("web").await, vec![fx.v1.to_string(); 2]);
}
