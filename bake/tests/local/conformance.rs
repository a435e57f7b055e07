//! The image/builder conformance suite (`cloud::conformance`) against the
//! local backend, with a real payload: the searchd binary, a books snapshot
//! and the config, installed by `images/install.sh`.

use crate::common::*;
use cloud::conformance::{self, Fixture};
use cloud::{BaseSelector, BuilderSettings, Cloud, Payload, StateDir};

fn fixture(fx: &Fx) -> Fixture {
    let idx = fx.path("books.idx");
    build_snapshot(fx, &idx);
    let archive = fx.path("payload.tar.zst");
    let entries = vec![
        bake::payload::Entry {
            name: "bin/searchd".into(),
            source: searchd_bin(),
            executable: true,
        },
        bake::payload::Entry {
            name: "index/books.idx".into(),
            source: idx,
            executable: false,
        },
        bake::payload::Entry {
            name: "etc/searchd.env".into(),
            source: fx.path("images/searchd.env"),
            executable: false,
        },
    ];
    let (sha256, bytes) = bake::payload::write(&entries, &archive).unwrap();
    Fixture {
        base: BaseSelector::Scratch,
        payload: Payload {
            archive,
            sha256,
            bytes,
        },
        install_script: fx.path("images/install.sh"),
        settings: BuilderSettings::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_conforms() {
    let fx = Fx::new();
    let state = StateDir::open(fx.state()).unwrap();
    let cloud = Cloud::local(&state);
    let fixture = fixture(&fx);
    conformance::missing_things(&cloud).await;
    conformance::bake_round_trip(&cloud, &fixture).await;
    conformance::bad_payload_is_refused(&cloud, &fixture).await;
    // Nothing left: no builders, no images, no partial files.
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images(), Vec::<String>::new());
}

#[tokio::test]
async fn local_backend_refuses_aws_only_things_as_bad_input() {
    let fx = Fx::new();
    let cloud = Cloud::local(&StateDir::open(fx.state()).unwrap());
    let err = cloud
        .images()
        .resolve_base(&BaseSelector::SsmParameter {
            name: "/aws/service/x".into(),
        })
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let err = cloud
        .images()
        .resolve_base(&BaseSelector::Tarball {
            path: fx.path("nope.tar"),
        })
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("nope.tar"), "{err}");
    // No regions, so no copies to tag or remove.
    let west = cloud::Region::from("eu-west-1");
    let img = cloud::ImageId::from("img-000000000000000000000000");
    let err = cloud
        .images()
        .tag_copy(&img, &west, &cloud::Tags::new())
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let err = cloud
        .images()
        .deregister_copy(&img, &west)
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}
