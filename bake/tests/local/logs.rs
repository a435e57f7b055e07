//! Logs on the image: the unit writes to the journal, journald keeps it on
//! disk within a cap, and a recipe's `[logs]` adds an rsyslog forwarder
//! that speaks TLS only. Bakes go through the real binary on the local
//! backend; the forwarder install.sh writes is checked with the real
//! rsyslogd (`rsyslogd -N1`) and used end to end on loopback: a line sent
//! through it arrives at a TLS collector, an impostor collector gets
//! nothing, and a line sent while the collector is down is kept on disk
//! and delivered once it is back.
//!
//! Needs `rsyslogd` with its gtls driver and `openssl` (Debian: rsyslog,
//! rsyslog-gnutls, openssl; `make deps-apt` installs them). Like every
//! other tool a test here needs, a missing one fails the test, saying so.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

const FORWARDER: &str = "etc/rsyslog.d/60-kiln-forward.conf";
const JOURNALD: &str = "etc/systemd/journald.conf.d/kiln.conf";
const UNIT: &str = "etc/systemd/system/searchd.service";
const RSYSLOG_WANTED: &str = "etc/systemd/system/multi-user.target.wants/rsyslog.service";
const CA_ON_IMAGE: &str = "etc/kiln/log-ca.pem";

/// The image's root file system, unpacked into the fixture's dir.
fn image_root(fx: &Fx, id: &str) -> PathBuf {
    let root = fx.path(&format!("root-{id}"));
    if !root.exists() {
        std::fs::create_dir_all(&root).unwrap();
        let rootfs = fx.state().join("images").join(id).join("rootfs.tar.zst");
        cloud::local::pack::unpack(&rootfs, &root).unwrap();
    }
    root
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `key=value` lines of one `[section]` of a systemd unit or drop-in.
fn section(text: &str, name: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            out.push(line.to_owned());
        }
    }
    out
}

fn id(v: &serde_json::Value) -> &str {
    v["image"].as_str().unwrap()
}

/// `[logs]` appended to the fixture's recipe (replacing an earlier one).
/// A fixture whose recipe forwards to logs.example.com:6514 with a fresh
/// CA (in `pki/`).
fn forwarding_fixture() -> Fx {
    let fx = Fx::new();
    let pki = Pki::new(fx.path("pki"));
    std::fs::copy(pki.ca(), fx.path("images/logs-ca.pem")).unwrap();
    set_logs(
        &fx,
        "forward = \"logs.example.com:6514\"\nca = \"logs-ca.pem\"\n",
    );
    fx
}

fn set_logs(fx: &Fx, section: &str) {
    fx.edit_recipe(|t| {
        let t = t.split("\n[logs]\n").next().unwrap().to_owned();
        format!("{t}\n[logs]\n{section}")
    });
}

fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("no `{name}`: install rsyslog, rsyslog-gnutls and openssl (`make deps-apt`)")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA, and certificates it signs, made with `openssl` (P-256: fast).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: PathBuf) -> Pki {
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(
            Command::new(tool("openssl"))
                .current_dir(&dir)
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args([
                    "-subj",
                    "/CN=kiln test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        );
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `name`: (certificate, key).
    fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key, csr) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        run_ok(
            Command::new(tool("openssl"))
                .current_dir(&self.dir)
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args([
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                ]),
        );
        run_ok(
            Command::new(tool("openssl"))
                .current_dir(&self.dir)
                .args([
                    "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                ])
                .args(["-CAcreateserial", "-days", "2", "-out", &cert, "-extfile"])
                .arg(&ext),
        );
        (self.dir.join(cert), self.dir.join(key))
    }
}

/// `rsyslogd -N1 -f CONF`: (passed, what it said).
fn rsyslog_check(conf: &Path) -> (bool, String) {
    let out = Command::new(tool("rsyslogd"))
        .args(["-N1", "-f"])
        .arg(conf)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_unit_logs_to_the_journal_and_nothing_about_rsyslog_without_logs() {
    let fx = Fx::new();
    let baked = fx.build_json();
    let root = image_root(&fx, id(&baked));

    let unit = read(&root.join(UNIT));
    let service = section(&unit, "Service");
    for want in [
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=searchd",
    ] {
        assert!(
            service.iter().any(|l| l == want),
            "{want} in [Service]:\n{unit}"
        );
    }
    // systemd ignores these in [Service] ("Unknown key"): they belong to [Unit].
    let unit_section = section(&unit, "Unit");
    for key in ["StartLimitIntervalSec=", "StartLimitBurst="] {
        assert!(
            unit_section.iter().any(|l| l.starts_with(key)),
            "{key}\n{unit}"
        );
        assert!(!service.iter().any(|l| l.starts_with(key)), "{key}\n{unit}");
    }

    let journald = read(&root.join(JOURNALD));
    let journal = section(&journald, "Journal");
    assert!(
        journal.contains(&"Storage=persistent".to_owned()),
        "{journald}"
    );
    assert!(
        journal.iter().any(|l| l.starts_with("SystemMaxUse=")),
        "a size cap: {journald}"
    );

    for absent in [
        "etc/rsyslog.d",
        CA_ON_IMAGE,
        RSYSLOG_WANTED,
        "var/lib/kiln/rsyslog",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(absent)).is_err(),
            "{absent} without [logs]"
        );
    }
}

#[test]
fn logs_put_the_ca_and_a_tls_only_forwarder_in_the_image_and_are_part_of_its_identity() {
    let fx = Fx::new();
    let plain = fx.build_json();
    // Each image's CA (none without [logs]): what `bake check` compares
    // against is the newest image, and images made within the same second
    // tie, so the reason expected follows from the image it names.
    let mut ca_of: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    ca_of.insert(id(&plain).to_owned(), None);
    let recipe = fx.recipe();
    let recipe = recipe.to_str().unwrap();
    let due = |ca_of: &BTreeMap<String, Option<Vec<u8>>>, ca: &[u8]| {
        let out = fx.bake(&["check", "--json", recipe]);
        assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let previous = v["previous"].as_str().unwrap();
        let reasons = v["reasons"].to_string();
        match &ca_of[previous] {
            None => assert_eq!(reasons, r#"["new file /etc/kiln/log-ca.pem"]"#, "{v}"),
            Some(old) if old != ca => {
                assert_eq!(reasons, r#"["changed file /etc/kiln/log-ca.pem"]"#, "{v}")
            }
            Some(_) => assert!(reasons.contains("the recipe changed"), "{v}"),
        }
    };

    let pki = Pki::new(fx.path("pki"));
    let ca = std::fs::read(pki.ca()).unwrap();
    std::fs::write(fx.path("images/logs-ca.pem"), &ca).unwrap();
    set_logs(
        &fx,
        "forward = \"logs.example.com:6514\"\nca = \"logs-ca.pem\"\n",
    );
    due(&ca_of, &ca);
    let logs = fx.build_json();
    assert_eq!(logs["found"], false);
    assert_ne!(logs["digest"], plain["digest"]);
    assert_ne!(logs["image"], plain["image"]);
    ca_of.insert(id(&logs).to_owned(), Some(ca.clone()));

    let root = image_root(&fx, id(&logs));
    assert_eq!(std::fs::read(root.join(CA_ON_IMAGE)).unwrap(), ca);
    let conf = read(&root.join(FORWARDER));
    for want in [
        "module(load=\"imjournal\"",
        "if $inputname == \"imjournal\" then call kiln-forward",
        "type=\"omfwd\"",
        "target=\"logs.example.com\"",
        "port=\"6514\"",
        "protocol=\"tcp\"",
        "StreamDriver=\"gtls\"",
        "StreamDriverMode=\"1\"",
        "StreamDriverAuthMode=\"x509/name\"",
        "StreamDriverPermittedPeers=\"logs.example.com\"",
        "StreamDriver.CAFile=\"/etc/kiln/log-ca.pem\"",
        "queue.type=\"LinkedList\"",
        "queue.filename=\"kiln-forward\"",
        "queue.saveOnShutdown=\"on\"",
        "action.resumeRetryCount=\"-1\"",
    ] {
        assert!(conf.contains(want), "{want} in:\n{conf}");
    }
    // One action, and it is the TLS one.
    assert_eq!(conf.matches("action(").count(), 1, "{conf}");
    assert_eq!(
        std::fs::read_link(root.join(RSYSLOG_WANTED)).unwrap(),
        Path::new("/usr/lib/systemd/system/rsyslog.service")
    );
    let manifest: serde_json::Value = serde_json::from_str(&read(
        &fx.state()
            .join("images")
            .join(id(&logs))
            .join("manifest.json"),
    ))
    .unwrap();
    let files = manifest["files"].as_array().unwrap();
    let entry = files
        .iter()
        .find(|f| f["path"] == "/etc/kiln/log-ca.pem")
        .unwrap_or_else(|| panic!("the CA in the manifest: {files:?}"));
    assert_eq!(entry["bytes"], ca.len());

    // The real rsyslogd accepts the forwarder as the image has it (level 1
    // loads every module it names, imjournal and the gtls driver included,
    // and checks every parameter's name and value).
    let wrapper = fx.path("n1.conf");
    std::fs::write(
        &wrapper,
        format!("$IncludeConfig {}\n", root.join(FORWARDER).display()),
    )
    .unwrap();
    let (ok, said) = rsyslog_check(&wrapper);
    assert!(ok, "rsyslogd -N1: {said}");
    // …and refuses a parameter it does not know: passing means something.
    let typo = fx.path("typo.conf");
    std::fs::write(&typo, conf.replace("StreamDriverMode=", "StreamDriverMod=")).unwrap();
    std::fs::write(&wrapper, format!("$IncludeConfig {}\n", typo.display())).unwrap();
    let (ok, said) = rsyslog_check(&wrapper);
    assert!(!ok && said.contains("StreamDriverMod"), "{said}");

    // The same recipe again: found, nothing launched.
    let launches = fx.launches();
    let again = fx.build_json();
    assert_eq!(again["found"], true);
    assert_eq!(again["image"], logs["image"]);
    assert_eq!(fx.launches(), launches);
    let out = fx.bake(&["check", recipe]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Another CA: a new image.
    let other = std::fs::read(Pki::new(fx.path("pki2")).ca()).unwrap();
    std::fs::write(fx.path("images/logs-ca.pem"), &other).unwrap();
    due(&ca_of, &other);
    let new_ca = fx.build_json();
    assert_eq!(new_ca["found"], false);
    ca_of.insert(id(&new_ca).to_owned(), Some(other.clone()));
    let mut digests = vec![
        plain["digest"].clone(),
        logs["digest"].clone(),
        new_ca["digest"].clone(),
    ];

    // Another collector, another peer name: new images.
    let mut last = String::new();
    for section in [
        "forward = \"logs.example.com:10514\"\nca = \"logs-ca.pem\"\n",
        "forward = \"logs.example.com:10514\"\nca = \"logs-ca.pem\"\npermitted_peer = \"*.example.com\"\n",
    ] {
        set_logs(&fx, section);
        due(&ca_of, &other);
        let b = fx.build_json();
        assert_eq!(b["found"], false, "{section}");
        digests.push(b["digest"].clone());
        last = id(&b).to_owned();
        ca_of.insert(last.clone(), Some(other.clone()));
    }
    let conf = read(&image_root(&fx, &last).join(FORWARDER));
    assert!(conf.contains("port=\"10514\""), "{conf}");
    assert!(
        conf.contains("StreamDriverPermittedPeers=\"*.example.com\""),
        "{conf}"
    );
    let unique: std::collections::BTreeSet<String> =
        digests.iter().map(|d| d.to_string()).collect();
    assert_eq!(unique.len(), digests.len(), "{digests:?}");

    // Without [logs] again: the first image, found.
    fx.edit_recipe(|t| t.split("\n[logs]\n").next().unwrap().to_owned());
    let back = fx.build_json();
    assert_eq!(back["found"], true);
    assert_eq!(back["image"], plain["image"]);
}

/// Through the binary: a bad `[logs]` is bad input (exit 2) naming the
/// field, before anything is launched.
#[test]
fn a_bad_logs_section_exits_2_naming_the_field() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "forward = \"logs.example.com\"\nca = \"logs-ca.pem\"\n",
            b"",
            "logs.forward: \"logs.example.com\" has no port",
        ),
        (
            "forward = \"logs.example.com:6514\"\n",
            b"",
            "logs.ca: missing",
        ),
        (
            "forward = \"logs.example.com:6514\"\nca = \"nope.pem\"\n",
            b"",
            "logs.ca: cannot read",
        ),
        (
            "forward = \"logs.example.com:6514\"\nca = \"logs-ca.pem\"\n",
            b"this is not PEM\n",
            "logs.ca: ",
        ),
        (
            "forward = \"logs.example.com:6514\"\nca = \"logs-ca.pem\"\ntls = false\n",
            b"",
            "unknown field `tls`",
        ),
    ];
    for (section, ca, want) in cases {
        let fx = Fx::new();
        let pem = std::fs::read(Pki::new(fx.path("pki")).ca()).unwrap();
        let ca = if ca.is_empty() { &pem[..] } else { ca };
        std::fs::write(fx.path("images/logs-ca.pem"), ca).unwrap();
        set_logs(&fx, section);
        let out = fx.bake(&["build", fx.recipe().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{section}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{section}: want {want:?} in {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
        assert_eq!(fx.launches(), 0);
        assert_eq!(fx.leftovers(), Vec::<String>::new());
    }
}

/// A base tarball holding `files` (path, contents, executable).
fn base_tarball(fx: &Fx, files: &[(&str, &str, bool)]) {
    let base = fx.path("base");
    for (path, text, exec) in files {
        let p = base.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        if *exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(fx.path("images/base.tar"))
            .arg("-C")
            .arg(&base)
            .arg("."),
    );
    fx.edit_recipe(|t| t.replace("local = \"scratch\"", "local = \"base.tar\""));
}

/// The start of a RHEL-like rsyslog.conf (AL2023's when rsyslog is
/// installed): it loads imjournal itself, then includes rsyslog.d.
const RHEL_RSYSLOG_CONF: &str = r#"global(workDirectory="/var/lib/rsyslog")
module(load="imjournal"             # provides access to the systemd journal
       UsePid="system" # PID number is retrieved as the ID of the process the journal entry originates from
       StateFile="imjournal.state") # File to store the position in the journal
include(file="/etc/rsyslog.d/*.conf" mode="optional")
*.info;mail.none;authpriv.none;cron.none                /var/log/messages
"#;

const RSYSLOGD_STUB: &str = "#!/bin/sh\nexit 0\n";

/// A base whose rsyslog.conf loads imjournal gets a forwarder that does
/// not load it again (twice is an error rsyslogd refuses); the real
/// rsyslogd accepts the base's configuration with the forwarder in it.
#[test]
fn a_base_that_loads_imjournal_gets_a_forwarder_that_does_not_load_it_twice() {
    let fx = forwarding_fixture();
    let scratch = fx.build_json();
    base_tarball(
        &fx,
        &[
            ("etc/rsyslog.conf", RHEL_RSYSLOG_CONF, false),
            ("usr/sbin/rsyslogd", RSYSLOGD_STUB, true),
            ("usr/lib64/rsyslog/lmnsd_gtls.so", "", false),
        ],
    );
    let rhel = fx.build_json();
    let root = image_root(&fx, id(&rhel));
    let conf = read(&root.join(FORWARDER));
    assert!(!conf.contains("module(load=\"imjournal\""), "{conf}");
    assert!(conf.contains("call kiln-forward"), "{conf}");

    // The base's own rsyslog.conf, its include pointed into the image.
    let base_conf = |root: &Path| {
        let text = read(&fx.path("base/etc/rsyslog.conf"))
            .replace(
                "/etc/rsyslog.d/",
                &format!("{}/etc/rsyslog.d/", root.display()),
            )
            .replace("/var/lib/rsyslog", fx.dir.path().to_str().unwrap());
        let p = root.with_extension("rsyslog.conf");
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ok, said) = rsyslog_check(&base_conf(&root));
    assert!(ok, "rsyslogd -N1: {said}");
    // The scratch image's forwarder (which loads imjournal) in that base
    // would be refused: the detection is what makes it pass.
    let (ok, said) = rsyslog_check(&base_conf(&image_root(&fx, id(&scratch))));
    assert!(!ok && said.contains("already in this config"), "{said}");
}

#[test]
fn a_base_with_rsyslog_but_no_tls_driver_fails_the_logs_step() {
    let fx = forwarding_fixture();
    base_tarball(&fx, &[("usr/sbin/rsyslogd", RSYSLOGD_STUB, true)]);
    let out = fx.bake(&["build", fx.recipe().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("step `logs`"), "{err}");
    assert!(err.contains("rsyslog-gnutls"), "{err}");
    assert_eq!(fx.images(), Vec::<String>::new());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// Runs images/install.sh on a payload of the fixture's searchd, snapshot
/// and env plus `extra` (payload name, contents); (exit code, result file).
fn install(fx: &Fx, extra: &[(&str, &str)]) -> (Option<i32>, String, PathBuf) {
    let dir = fx.path("install");
    std::fs::create_dir_all(dir.join("extra/etc/kiln")).unwrap();
    let idx = dir.join("books.idx");
    build_snapshot(fx, &idx);
    let mut entries = base_entries(fx, idx);
    for (name, text) in extra {
        let p = dir.join("extra").join(name);
        std::fs::write(&p, text).unwrap();
        entries.push(bake::payload::Entry {
            name: (*name).into(),
            source: p,
            executable: false,
        });
    }
    let payload = dir.join("payload.tar.zst");
    let (sha, _) = bake::payload::write(&entries, &payload).unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new("sh")
        .arg(fx.path("images/install.sh"))
        .arg("--root")
        .arg(&root)
        .arg("--payload")
        .arg(&payload)
        .args(["--sha256", &sha, "--result"])
        .arg(dir.join("result"))
        .output()
        .unwrap();
    (out.status.code(), read(&dir.join("result")), root)
}

const SETTINGS: &str =
    "KILN_LOG_HOST=logs.example.com\nKILN_LOG_PORT=6514\nKILN_LOG_PEER=logs.example.com\n";
const SOME_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn install_sh_refuses_to_forward_without_the_ca() {
    let fx = Fx::new();
    let (code, result, root) = install(&fx, &[(bake::payload::LOG_SETTINGS, SETTINGS)]);
    assert_eq!(code, Some(1), "{result}");
    assert!(result.starts_with("failed logs\n"), "{result}");
    assert!(result.contains("no etc/kiln/log-ca.pem"), "{result}");
    assert!(!root.join(FORWARDER).exists());

    // A payload in between: the CA without the settings, settings that
    // would break out of rsyslog's quotes, a CA that is no certificate.
    for (extra, why) in [
        (
            vec![(bake::payload::LOG_CA, SOME_PEM)],
            "no etc/kiln/logs.env",
        ),
        (
            vec![
                (
                    bake::payload::LOG_SETTINGS,
                    "KILN_LOG_HOST=x\" type=\"omfile\nKILN_LOG_PORT=6514\nKILN_LOG_PEER=x\n",
                ),
                (bake::payload::LOG_CA, SOME_PEM),
            ],
            "bad or missing value",
        ),
        (
            vec![
                (
                    bake::payload::LOG_SETTINGS,
                    "KILN_LOG_HOST=x\nKILN_LOG_PEER=x\n",
                ),
                (bake::payload::LOG_CA, SOME_PEM),
            ],
            "bad or missing value",
        ),
        (
            vec![
                (bake::payload::LOG_SETTINGS, SETTINGS),
                (bake::payload::LOG_CA, "not a certificate\n"),
            ],
            "holds no PEM certificate",
        ),
    ] {
        let fx = Fx::new();
        let (code, result, root) = install(&fx, &extra);
        assert_eq!(code, Some(1), "{result}");
        assert!(
            result.starts_with("failed logs\n") && result.contains(why),
            "{why}: {result}"
        );
        assert!(!root.join(FORWARDER).exists());
    }

    // The settings with their CA: installed, and the check still runs.
    let fx = Fx::new();
    let (code, result, root) = install(
        &fx,
        &[
            (bake::payload::LOG_SETTINGS, SETTINGS),
            (bake::payload::LOG_CA, SOME_PEM),
        ],
    );
    assert_eq!(code, Some(0), "{result}");
    assert!(result.starts_with("ok\n"), "{result}");
    assert_eq!(read(&root.join(CA_ON_IMAGE)), SOME_PEM);
    assert!(read(&root.join(FORWARDER)).contains("target=\"logs.example.com\""));
}

/// aws hands install.sh to the builder inside its user-data, which EC2
/// caps at 16 KiB together with the wrapper (about 1 KiB) and two
/// presigned S3 URLs (up to about 2.5 KiB each with a session token).
#[test]
fn install_sh_leaves_room_in_the_aws_user_data() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/install.sh");
    let bytes = std::fs::metadata(&script).unwrap().len();
    assert!(
        bytes <= 10 * 1024,
        "install.sh is {bytes} bytes; keep it within 10 KiB"
    );
}

// ---- end to end on loopback ---------------------------------------------

/// An rsyslogd in the foreground (`-n`, no pid file), its stderr in a
/// file; SIGKILLed when dropped, whatever happened.
struct Rsyslogd {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Rsyslogd {
    fn start(conf: &Path, stderr: &Path) -> Rsyslogd {
        let child = Command::new(tool("rsyslogd"))
            .args(["-n", "-iNONE", "-f"])
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        Rsyslogd {
            child: Some(child),
            stderr: stderr.to_owned(),
        }
    }

    /// Waits until its stderr contains `what` (10 s at most).
    fn said(&self, what: &str) -> bool {
        eventually(10, || {
            std::fs::read_to_string(&self.stderr).is_ok_and(|s| s.contains(what))
        })
    }

    /// SIGTERM, and waits for the exit (rsyslogd saves its queues first).
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let pid = child.id();
        assert!(
            eventually(20, || child.try_wait().unwrap().is_some()),
            "rsyslogd {pid} did not stop within 20 s"
        );
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a port number rsyslogd wrote (`listenPortFileName`).
fn port_file(p: &Path) -> u16 {
    let mut port = 0;
    assert!(
        eventually(10, || {
            port = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            port != 0
        }),
        "no port in {}",
        p.display()
    );
    port
}

/// A collector: TLS on 127.0.0.1 (`port` 0: any; its port is returned)
/// presenting `cert`, writing what it receives to `got`.
fn collector(
    dir: &Path,
    name: &str,
    cert: &(PathBuf, PathBuf),
    ca: &Path,
    port: u16,
    got: &Path,
) -> (Rsyslogd, u16) {
    let port_file_path = dir.join(format!("{name}.port"));
    let _ = std::fs::remove_file(&port_file_path);
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            r#"global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}" listenPortFileName="{portfile}" ruleset="got")
ruleset(name="got") {{ action(type="omfile" file="{got}") }}
"#,
            ca = ca.display(),
            cert = cert.0.display(),
            key = cert.1.display(),
            portfile = port_file_path.display(),
            got = got.display(),
        ),
    )
    .unwrap();
    let d = Rsyslogd::start(&conf, &dir.join(format!("{name}.stderr")));
    let port = if port == 0 {
        port_file(&port_file_path)
    } else {
        // rsyslogd writes the file only for port 0: wait for the listener.
        assert!(
            eventually(10, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "{name} does not listen on {port}"
        );
        port
    };
    (d, port)
}

/// A sender: the image's forwarder, fed by a plain TCP input on loopback
/// instead of the journal. There is no journald to read on a test
/// machine, so the `module(load="imjournal" …)` line is left out and the
/// test input is bound to the forwarder's ruleset (`kiln-forward`, which
/// the image calls for imjournal's messages); the image's absolute paths
/// (its CA, its spool directory) are mapped into the test's directories.
/// Everything else — the omfwd action, TLS, the peer check, the queue —
/// is the image's text.
fn sender(dir: &Path, name: &str, root: &Path, spool: &Path) -> (Rsyslogd, u16) {
    std::fs::create_dir_all(spool).unwrap();
    let image = read(&root.join(FORWARDER));
    let mapped: Vec<String> = image
        .lines()
        .map(|l| {
            if l.starts_with("module(load=\"imjournal\"") {
                "# (test) imjournal left out: no journald here".to_owned()
            } else {
                l.replace(
                    "\"/etc/kiln/log-ca.pem\"",
                    &format!("\"{}\"", root.join(CA_ON_IMAGE).display()),
                )
                .replace(
                    "\"/var/lib/kiln/rsyslog\"",
                    &format!("\"{}\"", spool.display()),
                )
            }
        })
        .collect();
    let mapped = mapped.join("\n") + "\n";
    assert!(mapped.contains("# (test) imjournal"), "{image}");
    assert!(
        !mapped.contains("\"/etc/kiln/") && !mapped.contains("\"/var/lib/kiln/"),
        "{mapped}"
    );
    let forwarder = dir.join(format!("{name}.forward.conf"));
    std::fs::write(&forwarder, mapped).unwrap();
    let port_file_path = dir.join(format!("{name}.port"));
    let _ = std::fs::remove_file(&port_file_path);
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "$IncludeConfig {forwarder}\nmodule(load=\"imtcp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{portfile}\" ruleset=\"kiln-forward\")\n",
            forwarder = forwarder.display(),
            portfile = port_file_path.display(),
        ),
    )
    .unwrap();
    let d = Rsyslogd::start(&conf, &dir.join(format!("{name}.stderr")));
    let port = port_file(&port_file_path);
    (d, port)
}

/// Sends one syslog line to a sender's plain input.
fn send(port: u16, text: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    writeln!(s, "<14>Jan  1 00:00:00 kiln-test searchd: {text}").unwrap();
}

fn received(got: &Path, text: &str) -> bool {
    std::fs::read_to_string(got).is_ok_and(|s| s.contains(text))
}

/// The forwarder an image gets, used as it is (see [`sender`]) against
/// collectors on loopback: a line arrives over TLS at the collector whose
/// certificate the recipe's CA signed for the permitted name; a collector
/// with a certificate from the same CA for another name gets nothing; a
/// line sent while the collector is down is kept in the disk queue across
/// a restart of rsyslogd and delivered once the collector is back.
/// A few seconds, each wait bounded (10 s, 20 s for a queue to be saved).
#[test]
fn a_line_through_the_images_forwarder_arrives_over_tls_and_only_at_the_named_collector() {
    let fx = Fx::new();
    let dir = fx.path("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = Pki::new(fx.path("pki"));
    let good = pki.server("logs.kiln.test");
    let impostor = pki.server("evil.kiln.test");
    let got = dir.join("got.log");
    let (collector_1, port) = collector(&dir, "collector", &good, &pki.ca(), 0, &got);

    std::fs::copy(pki.ca(), fx.path("images/logs-ca.pem")).unwrap();
    set_logs(
        &fx,
        &format!(
            "forward = \"127.0.0.1:{port}\"\nca = \"logs-ca.pem\"\npermitted_peer = \"logs.kiln.test\"\n"
        ),
    );
    let baked = fx.build_json();
    let root = image_root(&fx, id(&baked));
    let nonce = std::process::id();

    // 1. Delivered, over TLS, to the named collector.
    let (s1, input) = sender(&dir, "s1", &root, &dir.join("spool-1"));
    let first = format!("kiln-e2e-first-{nonce}");
    send(input, &first);
    assert!(
        eventually(10, || received(&got, &first)),
        "not delivered; the sender said: {}",
        read(&s1.stderr)
    );
    drop(s1);
    collector_1.stop();

    // 2. An impostor on the same address with a certificate from the same
    //    CA, for another name: refused before anything is sent.
    let stolen = dir.join("impostor.log");
    let (impostor_collector, _) = collector(&dir, "impostor", &impostor, &pki.ca(), port, &stolen);
    let (s2, input) = sender(&dir, "s2", &root, &dir.join("spool-2"));
    let secret = format!("kiln-e2e-secret-{nonce}");
    send(input, &secret);
    assert!(
        s2.said("not permitted to talk to it"),
        "the sender did not refuse the impostor: {}",
        read(&s2.stderr)
    );
    assert!(!received(&stolen, &secret), "the impostor got the line");
    drop(s2);
    impostor_collector.stop();
    assert!(!received(&stolen, &secret), "the impostor got the line");

    // 3. The collector down: the line waits, is saved to disk when
    //    rsyslogd stops, and goes out after a restart once it is back.
    let spool = dir.join("spool-3");
    let (s3, input) = sender(&dir, "s3", &root, &spool);
    let queued = format!("kiln-e2e-queued-{nonce}");
    send(input, &queued);
    assert!(
        s3.said("cannot connect to"),
        "the sender did not try: {}",
        read(&s3.stderr)
    );
    s3.stop();
    let spooled: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        spooled.iter().any(|n| n.starts_with("kiln-forward")),
        "nothing saved in the queue's directory: {spooled:?}"
    );
    let (collector_2, _) = collector(&dir, "collector-2", &good, &pki.ca(), port, &got);
    let (s4, _) = sender(&dir, "s4", &root, &spool);
    assert!(
        eventually(10, || received(&got, &queued)),
        "the queued line never arrived; the sender said: {}",
        read(&s4.stderr)
    );
    drop(s4);
    collector_2.stop();
}
