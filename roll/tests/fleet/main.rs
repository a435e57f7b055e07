//! roll end to end on the local backend: real images baked by bake, the
//! real fleet daemon and balancer, real searchd instances, a bounded load
//! generator sending requests through the balancer the whole time.
//!
//! Every test asserts zero failed requests and that every answer came
//! from one of the two images; the gate-failure tests use "forged" bad
//! images (a real image copied with one thing broken, see
//! `support::Fx::forge`).

mod support;

use std::time::Duration;

use support::*;

const SIZE: u32 = 3;

fn out_args<'a>(group: &'a str, image: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "out",
        "--group",
        group,
        "--image",
        image,
        "--gate-timeout",
        "20s",
    ];
    v.extend_from_slice(extra);
    v
}

fn report(fx: &Fx, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fx.path(name)).expect("report written")).unwrap()
}

#[test]
fn rolling_v1_to_v2_drops_no_request() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, SIZE);
    fx.assert_fleet("web", &fx.v1, 3);
    let before = answers(addr);
    let load = Load::start(addr, 4);
    let rep = fx.path("rolling.json");
    let out = fx.roll(&out_args(
        "web",
        &fx.v2,
        &["--report", rep.to_str().unwrap(), "--json"],
    ));
    assert_ok(&out, "roll out");
    let during = load.stop();
    let after = answers(addr);
    assert_ne!(before, after, "v2 answers some query differently");
    assert_clean(&during, &[&before, &after]);
    fx.assert_fleet("web", &fx.v2, 3);
    // stdout: one JSON object; the report has the evidence.
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["outcome"], "rolled-out");
    assert_eq!(res["image"], fx.v2.as_str());
    let r = report(&fx, "rolling.json");
    assert_eq!(r["outcome"], "rolled-out");
    assert_eq!(r["traffic"]["failed"], 0);
    assert!(r["traffic"]["requests"].as_u64().unwrap() > 0);
    assert!(
        r["gates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["outcome"] == "passed")
            .count()
            >= 3
    );
    let kinds: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Surge first, drain before terminate.
    let first_launch = kinds.iter().position(|k| *k == "launch").unwrap();
    let first_dereg = kinds.iter().position(|k| *k == "deregister").unwrap();
    let first_term = kinds.iter().position(|k| *k == "terminate").unwrap();
    assert!(
        first_launch < first_dereg && first_dereg < first_term,
        "{kinds:?}"
    );
    assert!(
        stderr(&out).contains("requests through the balancer, 0 failed"),
        "{}",
        stderr(&out)
    );
    // Three new instances launched, no more.
    assert_eq!(fx.launches(), 6);
    // The same command again: nothing to do.
    let again = fx.roll(&out_args("web", &fx.v2, &[]));
    assert_ok(&again, "roll out again");
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fx.launches(), 6);
}

#[test]
fn blue_green_then_back_drops_no_request() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, SIZE);
    let v1 = answers(addr);
    let load = Load::start(addr, 4);
    let rep = fx.path("bg.json");
    let out = fx.roll(&out_args(
        "web",
        &fx.v2,
        &[
            "--strategy",
            "blue-green",
            "--bake-time",
            "1s",
            "--shadow-percent",
            "100",
            "--report",
            rep.to_str().unwrap(),
        ],
    ));
    assert_ok(&out, "roll out --strategy blue-green");
    let v2 = answers(addr);
    fx.assert_fleet("web", &fx.v2, 3);
    let s = fx.status("web");
    assert_eq!(s["standby"]["image"], fx.v1.as_str(), "{s}");
    // `bake list` says what uses each image (what `bake prune` keeps).
    let list = std::process::Command::new(bake_bin())
        .arg("--state-dir")
        .arg(fx.state())
        .args(["list", "--json"])
        .env_remove("KILN_BACKEND")
        .output()
        .expect("bake list");
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    let uses = |img: &str| {
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["id"] == img)
            .map(|r| r["in_use_by"].to_string())
            .unwrap_or_default()
    };
    assert!(
        uses(&fx.v1).contains("web: blue/green standby until"),
        "{rows}"
    );
    assert!(uses(&fx.v2).contains("web--b: 3 instances"), "{rows}");
    let r = report(&fx, "bg.json");
    assert!(r["switch_ms"].is_u64(), "{r}");
    // The new set answered mirrored live traffic before the switch.
    assert!(r["shadow"]["mirrored"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["shadow"]["errors"], 0, "{r}");

    // roll back: one switch to the standby.
    let back = fx.roll(&[
        "back",
        "--group",
        "web",
        "--report",
        fx.path("back.json").to_str().unwrap(),
    ]);
    assert_ok(&back, "roll back");
    assert_eq!(String::from_utf8_lossy(&back.stdout).trim(), fx.v1);
    let during = load.stop();
    assert_clean(&during, &[&v1, &v2]);
    fx.assert_fleet("web", &fx.v1, 3);
    let b = report(&fx, "back.json");
    assert_eq!(b["outcome"], "switched-back");
    assert!(b["switch_ms"].as_u64().unwrap() < 1000, "{b}");
    // No instance was launched for the switch back.
    assert_eq!(fx.launches(), 6);
    assert_eq!(fx.status("web")["standby"]["image"], fx.v2.as_str());
}

#[test]
fn rolling_back_without_a_standby_is_a_rolling_roll() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, 2);
    assert_ok(&fx.roll(&out_args("web", &fx.v2, &[])), "roll out");
    let v2 = answers(addr);
    let load = Load::start(addr, 2);
    let back = fx.roll(&["back", "--group", "web"]);
    assert_ok(&back, "roll back");
    let during = load.stop();
    let v1 = answers(addr);
    assert_clean(&during, &[&v1, &v2]);
    fx.assert_fleet("web", &fx.v1, 2);
}

/// A bad image: exit 1, the fleet back on v1, nothing failed for clients,
/// and the report says which check failed on which instance.
fn bad_image(forge: impl FnOnce(&Fx) -> String, expect_in_reason: &str) {
    let fx = Fx::new();
    let bad = forge(&fx);
    let addr = fx.up("web", &fx.v1, SIZE);
    let v1 = answers(addr);
    let load = Load::start(addr, 4);
    let rep = fx.path("bad.json");
    let out = fx.roll(&[
        "out",
        "--group",
        "web",
        "--image",
        &bad,
        "--gate-timeout",
        "3s",
        "--report",
        rep.to_str().unwrap(),
    ]);
    let during = load.stop();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_clean(&during, &[&v1]);
    fx.assert_fleet("web", &fx.v1, 3);
    let r = report(&fx, "bad.json");
    assert_eq!(r["outcome"], "rolled-back");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(expect_in_reason),
        "reason {reason:?} lacks {expect_in_reason:?}"
    );
    assert!(stderr(&out).contains("ROLLED BACK"), "{}", stderr(&out));
    assert!(fx.status("web")["roll"].is_null());
}

#[test]
fn an_image_that_never_gets_ready_is_rolled_back() {
    bad_image(
        |fx| {
            fx.forge(
                &fx.v2,
                "neverready",
                |root| {
                    // searchd that hangs instead of serving.
                    let bin = root.join("opt/kiln/bin/searchd");
                    std::fs::write(&bin, "#!/bin/sh\nexec sleep 600\n").unwrap();
                },
                |_| {},
            )
        },
        "did not pass its gate within",
    );
}

#[test]
fn an_image_whose_golden_query_answers_differently_is_rolled_back() {
    bad_image(
        |fx| {
            fx.forge(
                &fx.v2,
                "golden",
                |_| {},
                |m| {
                    let a = m["index"]["golden"][0]["answer"]
                        .as_str()
                        .unwrap()
                        .replace("\"total\":", "\"total\":1");
                    m["index"]["golden"][0]["answer"] = serde_json::Value::String(a);
                },
            )
        },
        "golden /books?query=",
    );
}

#[test]
fn an_image_reporting_another_index_digest_is_rolled_back() {
    bad_image(
        |fx| {
            fx.forge(
                &fx.v2,
                "digest",
                |_| {},
                |m| {
                    m["index"]["digest"] = serde_json::Value::String("0".repeat(64));
                },
            )
        },
        "/version index_digest",
    );
}

#[test]
fn kill_9_of_roll_out_then_rerun_converges() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, SIZE);
    let v1 = answers(addr);
    let load = Load::start(addr, 4);
    // Kill it at three different points of the same roll.
    for (i, marker) in ["desired 3 -> 4", "in service", "terminated"]
        .iter()
        .enumerate()
    {
        let log = format!("roll-{i}.log");
        let mut child = spawn(&fx, &out_args("web", &fx.v2, &[]), &log);
        let seen = || std::fs::read_to_string(fx.path(&log)).unwrap_or_default();
        let mut done = false;
        eventually(60, marker, || {
            done = child.try_wait().unwrap().is_some();
            done || seen().contains(marker)
        });
        if !done {
            child.kill().unwrap(); // SIGKILL
        }
        let _ = child.wait();
    }
    let out = fx.roll(&out_args("web", &fx.v2, &[]));
    assert_ok(&out, "roll out after kill -9");
    let during = load.stop();
    let v2 = answers(addr);
    assert_clean(&during, &[&v1, &v2]);
    fx.assert_fleet("web", &fx.v2, 3);
    assert!(fx.status("web")["roll"].is_null());
    // 3 of v1, 3 of v2; a kill between "launch" and the record may cost
    // at most one extra launch per kill, never a duplicate of a running one.
    let launches = fx.launches();
    assert!((6..=9).contains(&launches), "{launches} launches");
}

#[test]
fn a_killed_instance_is_replaced_without_a_failed_request() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, SIZE);
    let v1 = answers(addr);
    let load = Load::start(addr, 4);
    let before = fx.instance_pgids();
    let (victim, pgid) = before.iter().next().map(|(k, v)| (k.clone(), *v)).unwrap();
    let st = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(st.success());
    eventually(30, "a replacement in service", || {
        let now = fx.live_instances("web");
        now.len() == 3
            && !now.iter().any(|i| i.0 == victim)
            && now.iter().all(|i| i.2 == "in_service" && i.3 == "healthy")
    });
    std::thread::sleep(Duration::from_millis(300));
    let during = load.stop();
    assert_clean(&during, &[&v1]);
    assert_eq!(fx.launches(), 4);
}

#[test]
fn a_killed_daemon_comes_back_with_its_instances_and_balancer() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, SIZE);
    let ids: Vec<String> = fx.live_instances("web").into_iter().map(|i| i.0).collect();
    // Steady state: the daemon has persisted what it saw (every 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    let pid = fx.daemon_pid().expect("daemon pid");
    sh(&format!("kill -KILL {pid}"));
    std::thread::sleep(Duration::from_millis(100));
    // roll status starts the daemon again; it re-adopts the instances.
    let s = fx.status("web");
    assert_ne!(fx.daemon_pid(), Some(pid));
    let mut again: Vec<String> = fx.live_instances("web").into_iter().map(|i| i.0).collect();
    let mut want = ids.clone();
    again.sort();
    want.sort();
    assert_eq!(again, want, "{s}");
    // The balancer is back on the same address and answers, through the
    // same instances, healthy as they were.
    let a = answers(addr);
    assert_eq!(a.len(), QUERIES.len());
    assert_eq!(fx.launches(), 3);
    fx.assert_fleet("web", &fx.v1, 3);
}

#[test]
fn a_second_roll_of_the_same_group_exits_3_naming_the_holder() {
    let fx = Fx::new();
    fx.up("web", &fx.v1, 2);
    let mut first = spawn(
        &fx,
        &out_args("web", &fx.v2, &["--bake-time", "3s"]),
        "first.log",
    );
    eventually(30, "the first roll to start", || {
        std::fs::read_to_string(fx.path("first.log"))
            .unwrap_or_default()
            .contains("bake time")
    });
    let second = fx.roll(&out_args("web", &fx.v2, &[]));
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("is held by roll-"),
        "{}",
        stderr(&second)
    );
    assert!(stderr(&second).contains("pid"), "{}", stderr(&second));
    assert!(first.wait().unwrap().success());
    fx.assert_fleet("web", &fx.v2, 2);
}

#[test]
fn up_is_idempotent_and_down_stops_everything() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, 2);
    assert_eq!(fx.up("web", &fx.v1, 2), addr);
    assert_eq!(fx.launches(), 2);
    // Different arguments say which command changes them.
    let out = fx.roll(&[
        "up",
        "--group",
        "web",
        "--image",
        &fx.v2,
        "--size",
        "2",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("roll out"), "{}", stderr(&out));
    let pgids = fx.instance_pgids();
    let daemon = fx.daemon_pid().unwrap();
    fx.down("web");
    // Balancer gone, instances gone, the daemon exited.
    assert!(std::net::TcpStream::connect(addr).is_err());
    eventually(10, "the daemon to exit", || {
        !std::path::Path::new(&format!("/proc/{daemon}")).exists()
            || std::fs::read_to_string(format!("/proc/{daemon}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    for pgid in pgids.values() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pgid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pgid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        );
    }
    let again = fx.roll(&["down", "--group", "web"]);
    assert_ok(&again, "roll down again");
}

#[test]
fn bad_input_exits_2() {
    let fx = Fx::new();
    let cases: Vec<Vec<&str>> = vec![
        vec!["out", "--group", "nope", "--image", &fx.v1],
        vec![
            "out",
            "--group",
            "web",
            "--image",
            "img-000000000000000000000000",
        ],
        vec!["status", "--group", "nope"],
        vec![
            "up",
            "--group",
            "web",
            "--image",
            &fx.v1,
            "--size",
            "0",
            "--listen",
            "127.0.0.1:0",
        ],
        vec![
            "out",
            "--group",
            "web",
            "--image",
            &fx.v1,
            "--min-healthy",
            "150%",
        ],
        vec!["out", "--group", "we b", "--image", &fx.v1],
        vec!["scale", "--group", "nope", "--size", "2"],
    ];
    for args in cases {
        let out = fx.roll(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn scale_up_and_down_drops_no_request() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, 2);
    let v1 = answers(addr);
    let load = Load::start(addr, 4);
    assert_ok(
        &fx.roll(&["scale", "--group", "web", "--size", "4"]),
        "scale up",
    );
    fx.assert_fleet("web", &fx.v1, 4);
    assert_ok(
        &fx.roll(&["scale", "--group", "web", "--size", "1"]),
        "scale down",
    );
    let during = load.stop();
    assert_clean(&during, &[&v1]);
    fx.assert_fleet("web", &fx.v1, 1);
}

#[test]
fn an_image_that_is_not_complete_is_refused() {
    let fx = Fx::new();
    fx.up("web", &fx.v1, 1);
    let unfinished = fx.forge(
        &fx.v2,
        "baking",
        |_| {},
        |m| {
            m["tags"]["kiln:state"] = serde_json::Value::String("baking".into());
        },
    );
    let out = fx.roll(&out_args("web", &unfinished, &[]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not complete"), "{}", stderr(&out));
    fx.assert_fleet("web", &fx.v1, 1);
}

#[test]
fn the_balancer_serves_tls() {
    let fx = Fx::new();
    let (cert, key) = (fx.path("c.pem"), fx.path("k.pem"));
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout {} -out {} -days 1 -subj /CN=localhost 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let out = fx.roll(&[
        "up",
        "--group",
        "tls",
        "--image",
        &fx.v1,
        "--size",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--health-interval",
        "100ms",
        "--health-timeout",
        "100ms",
    ]);
    assert_ok(&out, "roll up with TLS");
    let url = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let curl = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            &format!("{url}/books?query=alan&ids=1"),
        ])
        .output()
        .unwrap();
    assert!(curl.status.success());
    assert!(String::from_utf8_lossy(&curl.stdout).starts_with("{\"allocations\":"));
    // Plain HTTP to the TLS port gets no answer.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("{}/books?query=alan", url.replace("https", "http")),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("allocations"));
    fx.down("tls");
}

/// The answers to `query` through the balancer, `n` in a row on one
/// keep-alive connection.
fn sample_answers(addr: std::net::SocketAddr, query: &str, n: usize) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = format!("/books?query={}&ids=20", cloud::probe::form_encode(query));
    rt.block_on(async {
        let timeout = Duration::from_secs(5);
        let mut c = cloud::http::Http1::connect(addr, timeout)
            .await
            .expect("connect to the balancer");
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, body) = c.get(&path, timeout).await.expect("an answer");
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            out.push(cloud::probe::without_duration(&body).into_owned());
        }
        out
    })
}

#[test]
fn blue_green_canary_steps_split_live_traffic_then_switch() {
    let fx = Fx::new();
    let addr = fx.up("web", &fx.v1, 2);
    let v1 = answers(addr);
    let load = Load::start(addr, 2);
    let rep = fx.path("canary.json");
    let log = "canary.log";
    let mut child = spawn(
        &fx,
        &out_args(
            "web",
            &fx.v2,
            &[
                "--strategy",
                "blue-green",
                "--canary",
                "10%,50%",
                "--bake-time",
                "4s",
                "--report",
                rep.to_str().unwrap(),
            ],
        ),
        log,
    );
    let seen = || std::fs::read_to_string(fx.path(log)).unwrap_or_default();
    // While each step holds, a sample of answers through the balancer.
    let mut samples = Vec::new();
    for step in ["canary 10%", "canary 50%"] {
        eventually(120, step, || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "roll ended before {step}: {}",
                seen()
            );
            seen().contains(step)
        });
        // The step is logged right before the listener is asked.
        std::thread::sleep(Duration::from_millis(300));
        samples.push((step, sample_answers(addr, QUERIES[0], 200)));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "roll out --canary: {status}\n{}", seen());
    let v2 = answers(addr);
    let during = load.stop();
    assert_clean(&during, &[&v1, &v2]);
    fx.assert_fleet("web", &fx.v2, 2);

    // The split, roughly: requests of the load generator interleave with
    // the sample's, so the exact share of the balancer's counter is not
    // the sample's.
    assert_ne!(
        v1[QUERIES[0]], v2[QUERIES[0]],
        "v2 answers {} differently",
        QUERIES[0]
    );
    for ((step, answers), (lo, hi)) in samples.iter().zip([(4, 45), (60, 140)]) {
        let new = answers.iter().filter(|a| **a == v2[QUERIES[0]]).count();
        let old = answers.iter().filter(|a| **a == v1[QUERIES[0]]).count();
        assert_eq!(new + old, answers.len(), "{step}: answers from neither");
        assert!(
            (lo..=hi).contains(&new),
            "{step}: {new} of {} answers from v2",
            answers.len()
        );
    }
    let r = report(&fx, "canary.json");
    let steps: Vec<u64> = r["canary"]
        .as_array()
        .expect("canary steps in the report")
        .iter()
        .map(|c| c["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [10, 50], "{r}");
    let at: Vec<u64> = r["canary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        at[1] >= at[0] + 4_000,
        "each step held for the bake time: {at:?}"
    );
    assert!(r["switch_ms"].is_u64(), "{r}");
    assert_eq!(r["traffic"]["failed"], 0, "{r}");
    // Both images answered live traffic during the roll.
    let per_image = r["traffic"]["per_image"].as_object().unwrap();
    for img in [&fx.v1, &fx.v2] {
        assert!(
            per_image[img.as_str()]["requests"].as_u64().unwrap() > 0,
            "{img}: {r}"
        );
    }
    assert!(fx.status("web")["roll"].is_null());
}
