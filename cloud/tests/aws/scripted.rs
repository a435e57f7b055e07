//! Paths moto cannot emulate, against a scripted fake endpoint
//! (`motokit::Scripted`): moto makes images `available` at once with their
//! snapshots already listed, never fails an image, and frees a security
//! group the moment its instance terminates. Real EC2 does none of that, so
//! these tests script EC2's answers call by call and check what the aws
//! backend asks and when.

use std::time::Duration;

use cloud::aws::AwsOptions;
use cloud::{Cloud, ImageManifest, ImageSpec, InstanceId, RunId, Tags, WaitParams};
use motokit::{Reply, Scripted};

const NS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";

/// Real time, but tiny: the fake answers at once.
const QUICK: WaitParams = WaitParams {
    timeout: Duration::from_secs(20),
    interval: Duration::from_millis(1),
    backoff: 1.0,
    max_interval: Duration::from_millis(1),
};

async fn connect(fake: &Scripted, bucket: Option<&str>) -> Cloud {
    cloud::aws::connect(AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(fake.endpoint()),
        static_credentials: Some(("testing".into(), "testing".into())),
        bucket: bucket.map(str::to_owned),
        retries: false,
        wait: QUICK,
        ..AwsOptions::default()
    })
    .await
    .expect("connect")
    .0
}

fn image(state: &str, snapshot: Option<&str>, reason: Option<&str>) -> Reply {
    let bdm = snapshot
        .map(|s| {
            format!(
                "<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs>\
                 <snapshotId>{s}</snapshotId><volumeSize>8</volumeSize></ebs></item></blockDeviceMapping>"
            )
        })
        .unwrap_or_default();
    let reason = reason
        .map(|m| {
            format!("<stateReason><code>Client.Error</code><message>{m}</message></stateReason>")
        })
        .unwrap_or_default();
    Reply::ok(format!(
        "<DescribeImagesResponse {NS}><requestId>r</requestId><imagesSet><item>\
         <imageId>ami-0123</imageId><imageState>{state}</imageState><name>n</name>\
         <creationDate>2026-01-01T00:00:00.000Z</creationDate>{bdm}{reason}\
         <tagSet><item><key>kiln:digest</key><value>d</value></item></tagSet>\
         </item></imagesSet></DescribeImagesResponse>"
    ))
}

fn spec(run: &RunId) -> ImageSpec {
    let manifest: ImageManifest = serde_json::from_value(serde_json::json!({
        "format": 1, "id": "", "name": "n", "digest": "d",
        "base": {"id": "ami-base", "name": "base", "tarball": null},
        "parents": [], "files": [], "tags": {}, "searchd_version": "t",
        "index": {"name": "t", "digest": "0", "documents": 0, "path": "/x", "golden": []},
        "created": "2026-01-01T00:00:00Z", "created_unix": 0, "run": run, "rootfs": null
    }))
    .expect("manifest");
    let mut tags = Tags::new();
    tags.insert("kiln:digest".into(), "d".into());
    ImageSpec {
        name: "n".into(),
        run: run.clone(),
        tags,
        manifest,
    }
}

/// CreateImage returns while the image is `pending` and before EC2 lists
/// its snapshot: wait_available keeps polling, tags the snapshot (with the
/// run tag) on the poll where it first appears, once, and returns when the
/// image is available.
#[tokio::test]
async fn scripted_pending_image_gets_its_snapshot_tagged_when_it_appears() {
    let fake = Scripted::start();
    fake.then(
        "S3:GET",
        Reply::ok("<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"),
    )
    .then(
        "CreateImage",
        Reply::ok(format!("<CreateImageResponse {NS}><requestId>r</requestId><imageId>ami-0123</imageId></CreateImageResponse>")),
    )
    .then("S3:PUT", Reply::ok(""))
    .then("DescribeImages", image("pending", None, None))
    .then("DescribeImages", image("pending", Some("snap-1"), None))
    .then(
        "CreateTags",
        Reply::ok(format!("<CreateTagsResponse {NS}><requestId>r</requestId><return>true</return></CreateTagsResponse>")),
    )
    .then("DescribeImages", image("pending", Some("snap-1"), None))
    .then("DescribeImages", image("available", Some("snap-1"), None));
    let cloud = connect(&fake, Some("b")).await;
    let run = RunId::generate();
    let id = cloud
        .images()
        .create_image(&InstanceId::from("i-1"), &spec(&run))
        .await
        .expect("create image");
    assert_eq!(id.as_str(), "ami-0123");
    let info = cloud
        .images()
        .wait_available(&id, QUICK)
        .await
        .expect("available");
    assert_eq!(info.state, cloud::ImageState::Available);
    assert_eq!(
        fake.calls(),
        [
            "S3:GET",
            "CreateImage",
            "S3:PUT",
            "DescribeImages",
            "DescribeImages",
            "CreateTags",
            "DescribeImages",
            "DescribeImages"
        ]
    );
    assert!(fake.unused().is_empty(), "{:?}", fake.unused());
}

/// An image that fails: the wait ends at once with EC2's reason.
#[tokio::test]
async fn scripted_failed_image_reports_the_reason() {
    let fake = Scripted::start();
    fake.then("DescribeImages", image("pending", None, None))
        .then(
            "DescribeImages",
            image("failed", None, Some("InternalError: snapshot failed")),
        );
    let cloud = connect(&fake, None).await;
    let err = cloud
        .images()
        .wait_available(&cloud::ImageId::from("ami-0123"), QUICK)
        .await
        .expect_err("failed image");
    let msg = err.to_string();
    assert!(msg.contains("snapshot failed"), "{msg}");
    assert!(msg.contains("ami-0123"), "{msg}");
}

fn instance(state: &str) -> Reply {
    Reply::ok(format!(
        "<DescribeInstancesResponse {NS}><requestId>r</requestId><reservationSet><item>\
         <reservationId>r-1</reservationId><instancesSet><item><instanceId>i-1</instanceId>\
         <instanceState><code>0</code><name>{state}</name></instanceState>\
         <tagSet><item><key>kiln:bake</key><value>run-1</value></item></tagSet>\
         </item></instancesSet></item></reservationSet></DescribeInstancesResponse>"
    ))
}

/// Terminating a builder this process did not launch: it is found by its
/// run tag, its group deleted only after the instance is `terminated`, and
/// `DependencyViolation` (the interface still detaching) is waited out.
#[tokio::test]
async fn scripted_group_is_deleted_once_the_builder_is_gone() {
    let fake = Scripted::start();
    fake.then("DescribeInstances", instance("stopped"))
        .then(
            "DescribeSecurityGroups",
            Reply::ok(format!(
                "<DescribeSecurityGroupsResponse {NS}><requestId>r</requestId><securityGroupInfo><item>\
                 <groupId>sg-1</groupId><groupName>kiln-bake-run-1</groupName></item></securityGroupInfo>\
                 </DescribeSecurityGroupsResponse>"
            )),
        )
        .then(
            "TerminateInstances",
            Reply::ok(format!(
                "<TerminateInstancesResponse {NS}><requestId>r</requestId><instancesSet/></TerminateInstancesResponse>"
            )),
        )
        .then("DescribeInstances", instance("shutting-down"))
        .then("DescribeInstances", instance("terminated"))
        .then(
            "DeleteSecurityGroup",
            Reply::ec2_error("DependencyViolation", "resource sg-1 has a dependent object"),
        )
        .then(
            "DeleteSecurityGroup",
            Reply::ok(format!(
                "<DeleteSecurityGroupResponse {NS}><requestId>r</requestId><return>true</return></DeleteSecurityGroupResponse>"
            )),
        );
    let cloud = connect(&fake, None).await;
    cloud
        .builders()
        .terminate(&InstanceId::from("i-1"))
        .await
        .expect("terminate");
    assert_eq!(
        fake.calls(),
        [
            "DescribeInstances",
            "DescribeSecurityGroups",
            "TerminateInstances",
            "DescribeInstances",
            "DescribeInstances",
            "DeleteSecurityGroup",
            "DeleteSecurityGroup"
        ]
    );
    assert!(fake.unused().is_empty(), "{:?}", fake.unused());
}

fn ec2_ok(action: &str) -> Reply {
    Reply::ok(format!(
        "<{action}Response {NS}><requestId>r</requestId><return>true</return></{action}Response>"
    ))
}

/// One image described by id: `name`, copied to `copies`, deprecated by
/// hand at `deprecation` (EC2's own field) if given.
fn named_image(id: &str, copies: &str, deprecation: Option<&str>) -> Reply {
    let dep = deprecation
        .map(|t| format!("<deprecationTime>{t}</deprecationTime>"))
        .unwrap_or_default();
    Reply::ok(format!(
        "<DescribeImagesResponse {NS}><requestId>r</requestId><imagesSet><item>\
         <imageId>{id}</imageId><imageState>available</imageState><name>searchd-abc-run1</name>\
         <creationDate>2026-01-01T00:00:00.000Z</creationDate>{dep}\
         <tagSet><item><key>kiln:digest</key><value>d</value></item>\
         <item><key>kiln:copies</key><value>{copies}</value></item></tagSet>\
         </item></imagesSet></DescribeImagesResponse>"
    ))
}

/// `bake deprecate` on aws (moto answers 500 to image deprecation): EC2
/// deprecation on the image and on its copy (found by AMI name in the
/// copy's region), at the next whole minute, then kiln's tag with the
/// exact time on each; cancelling undoes both; and an image deprecated by
/// hand (EC2's DeprecationTime, no kiln tag) reads as deprecated.
#[tokio::test]
async fn scripted_deprecate_covers_the_copies_and_cancel_undoes_it() {
    let fake = Scripted::start();
    let t = 1_900_000_030u64; // 2030-03-17T17:47:10Z
    for _ in 0..2 {
        fake.then("DescribeImages", named_image("ami-src", "eu-west-1", None))
            .then("DescribeImages", named_image("ami-copy", "", None));
    }
    for a in ["EnableImageDeprecation", "DisableImageDeprecation"] {
        fake.then(a, ec2_ok(a)).then(a, ec2_ok(a));
    }
    for a in ["CreateTags", "DeleteTags"] {
        fake.then(a, ec2_ok(a)).then(a, ec2_ok(a));
    }
    let cloud = connect(&fake, None).await;
    let id = cloud::ImageId::from("ami-src");
    cloud
        .images()
        .deprecate(&id, Some(t))
        .await
        .expect("deprecate");
    cloud.images().deprecate(&id, None).await.expect("cancel");
    assert_eq!(
        fake.calls(),
        [
            "DescribeImages",
            "DescribeImages",
            "EnableImageDeprecation",
            "CreateTags",
            "EnableImageDeprecation",
            "CreateTags",
            "DescribeImages",
            "DescribeImages",
            "DisableImageDeprecation",
            "DeleteTags",
            "DisableImageDeprecation",
            "DeleteTags",
        ]
    );
    let bodies = fake.bodies();
    // The copy is looked up by the source's AMI name.
    assert!(bodies[1].contains("searchd-abc-run1"), "{}", bodies[1]);
    let minute = "DeprecateAt=2030-03-17T17%3A48%3A00Z";
    for (n, img) in [(2, "ami-src"), (4, "ami-copy")] {
        assert!(
            bodies[n].contains(&format!("ImageId={img}")),
            "{}",
            bodies[n]
        );
        assert!(bodies[n].contains(minute), "{}", bodies[n]);
        let tag = &bodies[n + 1];
        assert!(tag.contains(&format!("ResourceId.1={img}")), "{tag}");
        assert!(tag.contains("kiln%3Adeprecate-at"), "{tag}");
        assert!(tag.contains("2030-03-17T17%3A47%3A10Z"), "{tag}");
    }
    for (n, img) in [(8, "ami-src"), (10, "ami-copy")] {
        assert!(
            bodies[n].contains(&format!("ImageId={img}")),
            "{}",
            bodies[n]
        );
        assert!(
            bodies[n + 1].contains("kiln%3Adeprecate-at"),
            "{}",
            bodies[n + 1]
        );
    }
    assert!(fake.unused().is_empty(), "{:?}", fake.unused());

    // Deprecated by hand: EC2's time is what list and prune see.
    let fake = Scripted::start();
    fake.then(
        "DescribeImages",
        named_image("ami-src", "", Some("2026-02-01T00:00:00.000Z")),
    );
    let cloud = connect(&fake, None).await;
    let info = cloud.images().describe(&id).await.expect("describe");
    assert_eq!(info.deprecate_at(), Some(1_769_904_000));
    assert!(info.is_deprecated(1_769_904_000));
    assert!(!info.is_deprecated(1_769_903_999));
}
