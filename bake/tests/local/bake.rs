//! `bake` end to end on the local backend: the real binary, a private copy
//! of `images/`, a temp state dir.

use std::process::Stdio;
use std::sync::Arc;

use crate::common::*;

#[test]
fn same_inputs_same_id_and_the_second_bake_launches_nothing() {
    let fx = Fx::new();
    let first = fx.build_json();
    assert_eq!(first["found"], false);
    assert_eq!(first["launched"], 1);
    assert_eq!(fx.launches(), 1);

    // The shorthand `bake RECIPE`, plain output: the id alone on stdout.
    let out = fx.bake(&[fx.recipe().to_str().unwrap()]);
    assert_ok(&out);
    let id = String::from_utf8(out.stdout).unwrap();
    assert_eq!(id.trim(), first["image"].as_str().unwrap());
    assert_eq!(fx.launches(), 1, "the second bake launched a builder");

    let second = fx.build_json();
    assert_eq!(second["image"], first["image"]);
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["found"], true);
    assert_eq!(second["launched"], 0);
    assert_eq!(fx.launches(), 1);
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images().len(), 1);
}

#[test]
fn a_moved_images_dir_bakes_the_same_digest() {
    let a = Fx::new();
    let b = Fx::new();
    assert_eq!(a.build_json()["digest"], b.build_json()["digest"]);
}

#[test]
fn force_rebakes_the_same_content_to_the_same_image() {
    let fx = Fx::new();
    let first = fx.build_json();
    let out = fx.bake(&["build", "--force", "--json", fx.recipe().to_str().unwrap()]);
    assert_ok(&out);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["launched"], 1);
    assert_eq!(fx.launches(), 2);
    // Deterministic rootfs: the same content is the same image.
    assert_eq!(again["image"], first["image"]);
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

#[test]
fn one_changed_data_row_gives_a_new_image() {
    let fx = Fx::new();
    let first = fx.build_json();
    let csv = fx.path("images/books/books.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, text.replacen("Basic Books", "Basic Books Ltd", 1)).unwrap();
    let second = fx.build_json();
    assert_ne!(second["image"], first["image"]);
    assert_ne!(second["digest"], first["digest"]);
    assert_eq!(fx.images().len(), 2);

    // The new image names the old one as its parent.
    let out = fx.bake(&["show", "--json", second["image"].as_str().unwrap()]);
    assert_ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["parents"][0], first["image"]);
}

#[test]
fn a_changed_base_tarball_gives_a_new_image() {
    let fx = Fx::new();
    let base = fx.path("base");
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::write(base.join("etc/os-release"), "ID=kiln\nVERSION_ID=1\n").unwrap();
    let tar = |name: &str| {
        let st = std::process::Command::new("tar")
            .arg("-cf")
            .arg(fx.path(&format!("images/{name}")))
            .arg("-C")
            .arg(&base)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    };
    tar("base.tar");
    fx.edit_recipe(|t| t.replace("local = \"scratch\"", "local = \"base.tar\""));
    let first = fx.build_json();
    assert!(first["base"].as_str().unwrap().starts_with("sha256:"));

    // The image's root holds the base's files as well as the install.
    let rootfs = fx
        .state()
        .join("images")
        .join(first["image"].as_str().unwrap())
        .join("rootfs.tar.zst");
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -t", rootfs.display()))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("etc/os-release"), "{listing}");
    assert!(listing.contains("opt/kiln/bin/searchd"), "{listing}");
    assert!(
        listing.contains("etc/systemd/system/searchd.service"),
        "{listing}"
    );

    // A security fix in the base: same recipe, same files, new image.
    std::fs::write(base.join("etc/os-release"), "ID=kiln\nVERSION_ID=2\n").unwrap();
    tar("base.tar");
    let second = fx.build_json();
    assert_ne!(second["base"], first["base"]);
    assert_ne!(second["image"], first["image"]);
    assert_ne!(second["digest"], first["digest"]);
}

#[test]
fn a_wrong_payload_sha256_fails_with_the_builders_reason_and_leaves_nothing() {
    let fx = Fx::new();
    let out = fx
        .cmd(&["build", fx.recipe().to_str().unwrap()])
        .env("KILN_TEST_FAULT", "payload-sha256")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("verify-payload"), "{err}");
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images(), Vec::<String>::new());
    assert_eq!(fx.launches(), 1);
}

#[test]
fn a_snapshot_failing_searchd_check_exits_1_with_the_step_and_leaves_nothing() {
    let fx = Fx::new();
    let idx = fx.path("images/books.idx");
    build_snapshot(&fx, &idx);
    // Flip one byte in the middle: the structure is intact, the checksum
    // is not, so only the builder's `searchd check` can catch it.
    let mut bytes = std::fs::read(&idx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&idx, bytes).unwrap();
    fx.edit_recipe(|t| t.replace("index = \"books/index.toml\"", "snapshot = \"books.idx\""));

    let out = fx.bake(&["build", fx.recipe().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("step `check`"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images(), Vec::<String>::new());
}

#[test]
fn a_good_prebuilt_snapshot_bakes() {
    let fx = Fx::new();
    let built = fx.build_json();
    let idx = fx.path("images/books.idx");
    build_snapshot(&fx, &idx);
    fx.edit_recipe(|t| t.replace("index = \"books/index.toml\"", "snapshot = \"books.idx\""));
    // searchd index is deterministic: the prebuilt file has the same bytes
    // as the one bake built, so this is the same image.
    let pre = fx.build_json();
    assert_eq!(pre["digest"], built["digest"]);
    assert_eq!(pre["found"], true);
}

/// Starts a bake whose builder holds for a while, waits until the builder
/// is running and returns the child and the builder's process group.
fn start_slow_bake(fx: &Fx) -> (std::process::Child, u32) {
    let child = fx
        .cmd(&["build", fx.recipe().to_str().unwrap()])
        .env("KILN_LOCAL_BUILDER_HOLD", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pgid = None;
    let ok = eventually(60, || {
        let Ok(rd) = std::fs::read_dir(fx.state().join("builders")) else {
            return false;
        };
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("pgid")) {
                pgid = s.trim().parse().ok();
            }
        }
        pgid.is_some()
    });
    assert!(ok, "the builder never started");
    (child, pgid.unwrap_or_default())
}

fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sigint_mid_bake_cleans_up_everything() {
    let fx = Fx::new();
    let (child, pgid) = start_slow_bake(&fx);
    assert!(alive(pgid));
    signal(child.id(), "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.images(), Vec::<String>::new());
    assert!(eventually(10, || !alive(pgid)), "the builder still runs");
}

#[test]
fn kill_9_mid_bake_then_gc_leaves_nothing() {
    let fx = Fx::new();
    let (mut child, pgid) = start_slow_bake(&fx);
    signal(child.id(), "-KILL");
    let _ = child.wait();
    // The crash left the run's lock, scratch dir and builder (still
    // running as an orphan).
    let left = fx.leftovers();
    assert!(left.iter().any(|l| l.starts_with("builders/")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("runs/")), "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("tmp/")), "{left:?}");
    assert!(alive(pgid));

    let dry = fx.bake(&["gc", "--dry-run", "--json"]);
    assert_ok(&dry);
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), left.len());
    assert_eq!(fx.leftovers(), left, "--dry-run removed something");

    let out = fx.bake(&["gc"]);
    assert_ok(&out);
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert!(
        eventually(10, || !alive(pgid)),
        "the orphaned builder still runs"
    );
    // And gc on a clean state dir has nothing to do.
    let again = fx.bake(&["gc"]);
    assert_ok(&again);
    assert!(again.stdout.is_empty());
}

#[test]
fn gc_leaves_a_live_run_alone() {
    let fx = Fx::new();
    let (child, _pgid) = start_slow_bake(&fx);
    let out = fx.bake(&["gc", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    assert!(!fx.leftovers().is_empty());
    signal(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

#[test]
fn malformed_recipes_name_the_field_and_exit_2() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "name = \"searchd\"",
            "name = \"searchd\"\ncolour = \"blue\"",
            "unknown field `colour`",
        ),
        ("volume_gb = 8", "volume_gb = -1", "builder.volume_gb"),
        ("volume_gb = 8", "volume_gb = \"big\"", "volume_gb"),
        (
            "instance_type = \"t3.small\"",
            "instance_type = \"huge\"",
            "builder.instance_type",
        ),
        (
            "config = \"searchd.env\"",
            "config = \"missing.env\"",
            "install.config",
        ),
        (
            "team = \"search\"",
            "\"kiln:digest\" = \"x\"",
            "tags.kiln:digest",
        ),
        ("regions = []", "regions = [\"mars\"]", "publish.regions"),
        ("local = \"scratch\"", "local = \"nope.tar\"", "base.local"),
        (
            "index = \"books/index.toml\"",
            "index = \"books/index.toml\"\nsnapshot = \"x.idx\"",
            "install",
        ),
    ];
    for (from, to, want) in cases {
        let fx = Fx::new();
        fx.edit_recipe(|t| {
            assert!(t.contains(from), "fixture lacks {from:?}");
            t.replacen(from, to, 1)
        });
        let out = fx.bake(&["build", fx.recipe().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{to}: want {want:?} in {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
        assert_eq!(fx.launches(), 0);
        assert_eq!(fx.leftovers(), Vec::<String>::new());
    }
}

#[test]
fn bad_flags_exit_2() {
    let fx = Fx::new();
    assert_eq!(fx.bake(&["build"]).status.code(), Some(2));
    assert_eq!(fx.bake(&["prune"]).status.code(), Some(2));
    assert_eq!(
        fx.bake(&["gc", "--older-than", "soon"]).status.code(),
        Some(2)
    );
    assert_eq!(fx.bake(&["show", "img-0000"]).status.code(), Some(2));
    let missing = fx.bake(&["build", "/nonexistent/recipe.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/nonexistent/recipe.toml"));
    // gc --region: a malformed region is a flag error, and the local
    // backend has no other regions to scan.
    assert_eq!(fx.bake(&["gc", "--region", "moon"]).status.code(), Some(2));
    let elsewhere = fx.bake(&["gc", "--region", "eu-west-1"]);
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(
        stderr(&elsewhere).contains("other regions"),
        "{}",
        stderr(&elsewhere)
    );
    // A log filter that does not parse.
    let log = fx
        .cmd(&["list"])
        .env("KILN_LOG", "cloud=loud")
        .output()
        .unwrap();
    assert_eq!(log.status.code(), Some(2));
    assert!(stderr(&log).contains("KILN_LOG"), "{}", stderr(&log));
    let help = fx.bake(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("130"));
    assert!(help.contains("KILN_LOG"), "{help}");
}

/// Three bakes of the recipe, each with one data row changed (so three
/// images of the same name, each the next one's parent): `bake build
/// --json` of each, oldest first.
fn three_releases(fx: &Fx) -> Vec<serde_json::Value> {
    let csv = fx.path("images/books/books.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let mut built = Vec::new();
    for n in 0..3 {
        std::fs::write(
            &csv,
            original.replacen("Basic Books", &format!("Basic Books {n}"), 1),
        )
        .unwrap();
        built.push(fx.build_json());
        // Distinct creation seconds keep "newest" unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    built
}

#[test]
fn list_show_and_prune_keep_what_groups_use() {
    let fx = Fx::new();
    let ids: Vec<String> = three_releases(&fx)
        .iter()
        .map(|b| b["image"].as_str().unwrap().to_owned())
        .collect();

    let out = fx.bake(&["list", "--json"]);
    assert_ok(&out);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = list.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    let table = fx.bake(&["list"]);
    assert_eq!(String::from_utf8_lossy(&table.stdout).lines().count(), 3);

    let out = fx.bake(&["show", "--json", &ids[0]]);
    assert_ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["index"]["name"], "books");
    assert_eq!(m["index"]["golden"].as_array().unwrap().len(), 5);
    assert!(
        m["index"]["golden"][0]["answer"]
            .as_str()
            .unwrap()
            .contains("allocations")
    );
    assert_eq!(m["tags"]["kiln:index-digest"], m["index"]["digest"]);
    assert!(fx.bake(&["show", &ids[0]]).status.success());

    // A group runs the oldest image: prune must keep it. Groups live in
    // the fleet daemon (here in this process, on the runtime's worker
    // threads, so it keeps serving while bake runs); its instance is a
    // real searchd from that image.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = cloud::StateDir::open(fx.state()).unwrap();
    let c = cloud::Cloud::local(&state);
    let web = cloud::GroupName::from("web");
    let fleet = rt.block_on(async {
        let fleet = InProcessFleet::start(&state).await;
        c.groups()
            .create_group(&cloud::GroupSpec::fixed(
                web.clone(),
                cloud::ImageId::new(ids[0].clone()),
                1,
            ))
            .await
            .unwrap();
        let params = c
            .wait_params()
            .with_timeout(std::time::Duration::from_secs(60));
        cloud::wait_until(params, "the group's instance in service", || async {
            let g = c.groups().describe_group(&web).await?;
            Ok(g.instances
                .iter()
                .any(|i| i.lifecycle == cloud::Lifecycle::InService)
                .then_some(()))
        })
        .await
        .unwrap();
        fleet
    });

    let dry = fx.bake(&["prune", "--keep", "1", "--dry-run"]);
    assert_ok(&dry);
    assert_eq!(String::from_utf8_lossy(&dry.stdout).trim(), ids[1]);
    assert_eq!(fx.images().len(), 3, "--dry-run deleted something");

    let out = fx.bake(&["prune", "--keep", "1", "--json"]);
    assert_ok(&out);
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["delete"], serde_json::json!([ids[1]]));
    assert_eq!(p["protected"], serde_json::json!([ids[0]]));
    let mut left = fx.images();
    left.sort();
    let mut want = vec![ids[0].clone(), ids[2].clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(fx.bake(&["show", &ids[1]]).status.code(), Some(2));
    assert_eq!(fx.leftovers(), Vec::<String>::new());

    // The instance kept serving from the image prune kept; deleting the
    // group stops it and, the fleet serving nothing more, the daemon.
    rt.block_on(async {
        let g = c.groups().describe_group(&web).await.unwrap();
        assert_eq!(g.instances.len(), 1);
        assert_eq!(g.instances[0].lifecycle, cloud::Lifecycle::InService);
        assert_eq!(g.instances[0].image.as_str(), ids[0]);
        c.groups().delete_group(&web).await.unwrap();
        fleet.stopped().await;
    });
}

/// A bake that stopped just before marking its image complete
/// (`KILN_TEST_FAULT=hold-before-complete`): the child, the image, and its
/// stderr so far (read by a thread, so the child never blocks on it).
struct Held {
    child: std::process::Child,
    image: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Held {
    /// Signals the bake and waits for it; its exit code and stderr.
    fn stop(mut self, sig: &str) -> (Option<i32>, String) {
        signal(self.child.id(), sig);
        let status = self.child.wait().unwrap();
        // The reader thread sees EOF once the bake is gone.
        eventually(10, || Arc::strong_count(&self.stderr) == 1);
        let err = self.stderr.lock().unwrap().clone();
        (status.code(), err)
    }
}

const HOLDING: &str = "test fault: holding before marking ";

fn start_bake_holding_before_complete(fx: &Fx, extra: &[&str]) -> Held {
    let recipe = fx.recipe();
    let mut args = vec!["build", recipe.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut child = fx
        .cmd(&args)
        .env("KILN_TEST_FAULT", "hold-before-complete")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(std::sync::Mutex::new(String::new()));
    let pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut image = None;
    let ok = eventually(120, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "bake ended before holding ({status:?}): {}",
                stderr.lock().unwrap()
            );
        }
        let err = stderr.lock().unwrap();
        image = err.lines().find_map(|l| {
            let rest = l.split_once(HOLDING)?.1;
            Some(rest.split_whitespace().next()?.to_owned())
        });
        image.is_some()
    });
    assert!(ok, "the bake never held: {}", stderr.lock().unwrap());
    Held {
        child,
        image: image.unwrap_or_default(),
        stderr,
    }
}

/// `bake show --json ID`'s `bake_state`.
fn bake_state(fx: &Fx, id: &str) -> String {
    let out = fx.bake(&["show", "--json", id]);
    if !out.status.success() {
        return String::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["bake_state"].as_str().unwrap_or_default().to_owned()
}

fn show(fx: &Fx, id: &str) -> serde_json::Value {
    let out = fx.bake(&["show", "--json", id]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_bake_marks_its_image_complete_and_list_and_show_say_so() {
    let fx = Fx::new();
    let id = fx.build_json()["image"].as_str().unwrap().to_owned();
    let m = show(&fx, &id);
    assert_eq!(m["bake_state"], "complete");
    assert_eq!(m["tags"]["kiln:state"], "complete");
    let out = fx.bake(&["show", &id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("state:           complete"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = fx.bake(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["bake_state"], "complete", "{list}");
    let out = fx.bake(&["list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("\tcomplete")
    );
}

/// kill -9 once the image exists but before it is marked complete: the
/// image stays `baking`, is no digest hit, and `bake gc` removes it (its
/// run's lock is free) with everything else the run left.
#[test]
fn kill_9_before_complete_leaves_a_baking_image_that_gc_removes() {
    let fx = Fx::new();
    let held = start_bake_holding_before_complete(&fx, &[]);
    let id = held.image.clone();
    assert_eq!(bake_state(&fx, &id), "baking");
    // gc leaves a live run's unfinished image alone.
    let out = fx.bake(&["gc", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"], serde_json::json!([]), "{report}");
    held.stop("-KILL");

    assert_eq!(fx.images(), vec![id.clone()]);
    assert_eq!(bake_state(&fx, &id), "baking");
    let table = fx.bake(&["list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("\tbaking"));
    // prune neither counts nor deletes it.
    let out = fx.bake(&["prune", "--keep", "0", "--json"]);
    assert_ok(&out);
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["delete"], serde_json::json!([]), "{p}");
    assert_eq!(p["unfinished"], serde_json::json!([id]), "{p}");
    assert_eq!(fx.images(), vec![id.clone()]);

    let dry = fx.bake(&["gc", "--dry-run", "--json"]);
    assert_ok(&dry);
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(
        report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "image" && l["id"] == id.as_str()),
        "{report}"
    );
    assert_eq!(fx.images(), vec![id.clone()], "--dry-run removed it");

    let out = fx.bake(&["gc"]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("image\t{id}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fx.images(), Vec::<String>::new());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// The bug: after a kill -9 between "image available" and "marked
/// complete", the next bake of the same inputs must bake (not answer
/// "nothing to bake"), take the unfinished image over and complete it;
/// the one after that finds it.
#[test]
fn kill_9_before_complete_then_the_same_inputs_bake_again() {
    let fx = Fx::new();
    let held = start_bake_holding_before_complete(&fx, &[]);
    let id = held.image.clone();
    held.stop("-KILL");
    assert_eq!(fx.launches(), 1);
    assert_eq!(bake_state(&fx, &id), "baking");

    let out = fx.bake(&["build", "--json", fx.recipe().to_str().unwrap()]);
    assert_ok(&out);
    assert!(
        !stderr(&out).contains("nothing to bake"),
        "{}",
        stderr(&out)
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["found"], false);
    assert_eq!(again["launched"], 1);
    assert_eq!(fx.launches(), 2);
    // Same content, same id: now this run's, and complete.
    assert_eq!(again["image"], id.as_str());
    let m = show(&fx, &id);
    assert_eq!(m["bake_state"], "complete");
    assert_eq!(m["tags"]["kiln:bake"], again["run"]);
    assert_eq!(m["run"], again["run"]);

    // gc removes what the killed run left (its lock, its scratch), not
    // the image.
    let out = fx.bake(&["gc"]);
    assert_ok(&out);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("image"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fx.images(), vec![id.clone()]);
    assert_eq!(fx.leftovers(), Vec::<String>::new());

    let third = fx.build_json();
    assert_eq!(third["found"], true);
    assert_eq!(third["image"], id.as_str());
    assert_eq!(fx.launches(), 2);
}

/// Ctrl-C before the image is marked complete removes it (it is this
/// run's); but a forced rebake interrupted there leaves the complete
/// image an earlier bake made (the same id) alone.
#[test]
fn sigint_before_complete_removes_only_the_runs_own_image() {
    let fx = Fx::new();
    let held = start_bake_holding_before_complete(&fx, &[]);
    let (code, err) = held.stop("-INT");
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(fx.images(), Vec::<String>::new());
    assert_eq!(fx.leftovers(), Vec::<String>::new());

    let first = fx.build_json();
    let id = first["image"].as_str().unwrap().to_owned();
    let held = start_bake_holding_before_complete(&fx, &["--force"]);
    assert_eq!(held.image, id);
    let (code, err) = held.stop("-INT");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(fx.images(), vec![id.clone()], "the release was removed");
    assert_eq!(bake_state(&fx, &id), "complete");
    assert_eq!(show(&fx, &id)["run"], first["run"]);
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// `bake check`: exit 10 with the reason while no image has the recipe's
/// input digest (none yet; a new base image; a changed file; a changed
/// recipe), exit 0 printing the image once one has it. It launches
/// nothing.
#[test]
fn check_says_whether_a_rebake_is_due_and_why() {
    let fx = Fx::new();
    let base = fx.path("base");
    std::fs::create_dir_all(base.join("etc")).unwrap();
    let tar = |version: &str| {
        std::fs::write(
            base.join("etc/os-release"),
            format!("ID=kiln\nVERSION_ID={version}\n"),
        )
        .unwrap();
        let st = std::process::Command::new("tar")
            .arg("-cf")
            .arg(fx.path("images/base.tar"))
            .arg("-C")
            .arg(&base)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    };
    tar("1");
    let first = fx.path("base-1.tar");
    std::fs::copy(fx.path("images/base.tar"), &first).unwrap();
    fx.edit_recipe(|t| t.replace("local = \"scratch\"", "local = \"base.tar\""));
    let recipe = fx.recipe();
    let recipe = recipe.to_str().unwrap();
    let check = |want: i32| -> serde_json::Value {
        let out = fx.bake(&["check", "--json", recipe]);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{}{}",
            stderr(&out),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };

    let v = check(10);
    assert_eq!(v["due"], true);
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no complete image of searchd"),
        "{v}"
    );
    assert_eq!(fx.launches(), 0, "check launches nothing");

    let built = fx.build_json();
    let v = check(0);
    assert_eq!(v["image"], built["image"], "{v}");
    assert_eq!(v["digest"], built["digest"], "{v}");
    let out = fx.bake(&["check", recipe]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        built["image"].as_str().unwrap()
    );

    // A security fix in the base.
    tar("2");
    let v = check(10);
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("new base image"), "{v}");
    assert_eq!(v["previous"], built["image"], "{v}");
    std::fs::copy(&first, fx.path("images/base.tar")).unwrap();
    check(0);

    // A changed file: the config the image carries.
    let env = fx.path("images/searchd.env");
    let text = std::fs::read_to_string(&env).unwrap();
    std::fs::write(&env, format!("{text}\n# tuned\n")).unwrap();
    let v = check(10);
    assert_eq!(
        v["reasons"],
        serde_json::json!(["changed file /etc/kiln/searchd.env"]),
        "{v}"
    );
    std::fs::write(&env, text).unwrap();
    check(0);

    // The recipe alone.
    fx.edit_recipe(|t| t.replace("team = \"search\"", "team = \"search-infra\""));
    let v = check(10);
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("the recipe changed"),
        "{v}"
    );
    assert_eq!(fx.launches(), 1, "only the one build launched a builder");
}

/// Two bakes of the same inputs at once on one machine: the second waits
/// for the first (saying so) and prints the same image; one builder in all.
#[test]
fn a_second_bake_of_the_same_inputs_waits_for_the_first() {
    let fx = Fx::new();
    let recipe = fx.recipe();
    let first = fx
        .cmd(&["build", recipe.to_str().unwrap()])
        .env("KILN_LOCAL_BUILDER_HOLD", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(60, || std::fs::read_dir(fx.state().join("builders"))
            .is_ok_and(|mut d| d.next().is_some())),
        "the first builder never started"
    );
    let second = fx.bake(&["build", recipe.to_str().unwrap()]);
    let first = first.wait_with_output().unwrap();
    assert_ok(&first);
    assert_ok(&second);
    assert_eq!(first.stdout, second.stdout, "the same image");
    assert!(
        stderr(&second).contains("waiting for it"),
        "{}",
        stderr(&second)
    );
    assert!(
        stderr(&second).contains("nothing to bake"),
        "{}",
        stderr(&second)
    );
    assert_eq!(fx.launches(), 1, "one builder");
}

/// `bake list --json`, parsed, by id.
fn listed(fx: &Fx) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = fx.bake(&["list", "--json"]);
    assert_ok(&out);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter()
        .map(|i| (i["id"].as_str().unwrap().to_owned(), i))
        .collect()
}

fn pruned(fx: &Fx, extra: &[&str]) -> serde_json::Value {
    let out = fx.bake(&[&["prune", "--keep", "1", "--json"], extra].concat());
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn show_lineage_and_deprecate_then_prune_honours_it() {
    let fx = Fx::new();
    let mut ids = Vec::new();
    for built in three_releases(&fx) {
        assert_eq!(built["copies"], serde_json::json!([]), "{built}");
        ids.push(built["image"].as_str().unwrap().to_owned());
    }

    // Lineage: parent first, back to the first bake of the name.
    let m = show(&fx, &ids[2]);
    let lineage: Vec<&str> = m["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(lineage, [ids[1].as_str(), ids[0].as_str()], "{m}");
    assert_eq!(m["lineage"][0]["exists"], true);
    assert_eq!(m["lineage"][0]["base"], "scratch (scratch)");
    assert!(
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["sha256"].as_str().is_some_and(|h| h.len() == 64))
    );
    let text = String::from_utf8_lossy(&fx.bake(&["show", &ids[2]]).stdout).into_owned();
    assert!(
        text.contains(&format!("lineage:         {}", ids[1])),
        "{text}"
    );
    assert!(text.contains("golden:          "), "{text}");

    // Deprecated later: nothing changes yet, but list says when.
    let out = fx.bake(&["deprecate", &ids[2], "--at", "2h", "--json"]);
    assert_ok(&out);
    let l = listed(&fx);
    assert_eq!(l[&ids[2]]["deprecated"], false);
    assert!(l[&ids[2]]["deprecate_at"].is_string());
    assert_eq!(
        pruned(&fx, &["--dry-run"])["keep"],
        serde_json::json!([ids[2]])
    );

    // Deprecated now: not one of the newest 1 any more.
    assert_ok(&fx.bake(&["deprecate", &ids[2], "--at", "now"]));
    assert_eq!(listed(&fx)[&ids[2]]["deprecated"], true);
    let table = String::from_utf8_lossy(&fx.bake(&["list"]).stdout).into_owned();
    assert!(table.contains("complete, deprecated "), "{table}");
    let p = pruned(&fx, &["--dry-run"]);
    assert_eq!(p["keep"], serde_json::json!([ids[1]]), "{p}");
    assert_eq!(p["delete"], serde_json::json!([ids[2], ids[0]]), "{p}");
    assert_eq!(p["deprecated"], serde_json::json!([ids[2]]), "{p}");

    // Cancelled: as before.
    assert_ok(&fx.bake(&["deprecate", &ids[2], "--cancel"]));
    assert_eq!(
        listed(&fx)[&ids[2]]["deprecate_at"],
        serde_json::Value::Null
    );

    // The middle one deprecated and pruned for real: the newest stays, and
    // its lineage names the deleted parent and stops there.
    assert_ok(&fx.bake(&["deprecate", &ids[1], "--at", "now"]));
    let p = pruned(&fx, &[]);
    assert_eq!(p["delete"], serde_json::json!([ids[1], ids[0]]), "{p}");
    assert_eq!(fx.images(), vec![ids[2].clone()]);
    let m = show(&fx, &ids[2]);
    assert_eq!(
        m["lineage"],
        serde_json::json!([{
            "id": ids[1], "exists": false, "created": null, "base": null, "digest": null
        }])
    );

    // Bad input: exit 2, naming the problem.
    for (args, why) in [
        (vec!["deprecate", "img-nope", "--at", "now"], "img-nope"),
        (vec!["deprecate", &ids[2], "--at", "tomorrow"], "RFC 3339"),
        (
            vec!["deprecate", &ids[2], "--at", "2001-01-01T00:00:00Z"],
            "in the past",
        ),
        (vec!["deprecate", &ids[2]], "--at"),
        (
            vec!["deprecate", &ids[2], "--at", "now", "--cancel"],
            "--cancel",
        ),
    ] {
        let out = fx.bake(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
}

/// A search definition (one search over several indexes) bakes like an
/// index definition: one snapshot holding both indexes, named and served
/// by the search's name, its manifest recording the search.
#[test]
fn a_search_definition_bakes_one_snapshot_of_all_its_indexes() {
    let fx = Fx::new();
    let books = fx.path("images/books");
    let def = std::fs::read_to_string(books.join("index.toml")).unwrap();
    std::fs::write(
        books.join("classics.toml"),
        def.replacen("name = \"books\"", "name = \"classics\"", 1),
    )
    .unwrap();
    std::fs::write(
        books.join("shelves.toml"),
        "name = \"shelves\"\nindexes = [\"index.toml\", \"classics.toml\"]\n[[golden]]\nquery = \"alan\"\nmin_total = 2\n",
    )
    .unwrap();
    fx.edit_recipe(|t| {
        t.replace(
            "index = \"books/index.toml\"",
            "index = \"books/shelves.toml\"",
        )
    });
    let built = fx.build_json();
    let out = fx.bake(&["show", "--json", built["image"].as_str().unwrap()]);
    assert_ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["index"]["name"], "shelves", "{m}");
    assert_eq!(m["index"]["documents"], 1080, "{m}");
    assert_eq!(m["index"]["golden"][0]["query"], "alan", "{m}");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}
