//! The IAM actions the aws backend's source calls, read from the source
//! itself (cloud/src/aws/**.rs), and the policy files they are held
//! against (policies/*.json). Shared by the `policies` test binary (the
//! equality of code and policy) and the moto IAM tests in `aws` (which
//! compare what a run actually called with the same sets).
//!
//! How a call is found: every SDK request ends in `.send()` (or
//! `.presigned(..)`), so each of those is walked back through its method
//! chain to the client it started from — a `Ctx` field (`ctx.ec2`,
//! `self.ctx\n.autoscaling`, …), `ctx.ec2_in(region)`, or a local name bound
//! to one of those (`let asg = &self.ctx.autoscaling;`, a parameter
//! `ec2: &aws_sdk_ec2::Client`, a request builder `let mut req =
//! ctx.ec2.describe_subnets();`). The first method after the client is the
//! operation. A `.send()` the walk cannot attribute is an error, never
//! skipped: a scanner that silently missed calls would make the equality
//! test pass for the wrong reason.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which binary uses a module's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bin {
    Bake,
    Roll,
}

/// How much of a module's calls a binary uses.
#[derive(Debug, Clone, Copy)]
pub enum Uses {
    /// Every call in the module.
    All,
    /// Only these actions (the module is shared; the other binary's code
    /// paths reach only these). Each must be called in the module, so
    /// the list cannot go stale silently.
    Only(&'static [&'static str]),
}

/// One module (file name, or a prefix ending in `*`), and what bake and
/// roll use of it. A module with SDK calls that matches no row fails the
/// test: someone must say which binary it belongs to.
pub struct Module {
    pub pattern: &'static str,
    pub bake: Option<Uses>,
    pub roll: Option<Uses>,
}

/// Which binary calls what. Shared modules list the actions the other
/// binary's code paths reach:
/// - roll reads images (`Images::describe`, `Images::manifest`:
///   DescribeImages, the manifest's GetObject) — roll/src/cmd/{mod,out}.rs,
///   roll/src/exec.rs — and groups check an image exists with
///   `images::describe_in`;
/// - `bake prune` keeps what groups run (`Groups::list_groups`, which
///   reads the groups, their instances, template versions, hooks,
///   schedules and target-group ports) — bake/src/cmd/prune.rs.
pub const MODULES: &[Module] = &[
    Module {
        pattern: "builders.rs",
        bake: Some(Uses::All),
        roll: None,
    },
    Module {
        pattern: "images.rs",
        bake: Some(Uses::All),
        roll: Some(Uses::Only(&["ec2:DescribeImages", "s3:GetObject"])),
    },
    Module {
        pattern: "janitor.rs",
        bake: Some(Uses::All),
        roll: None,
    },
    Module {
        pattern: "userdata.rs",
        bake: Some(Uses::All),
        roll: None,
    },
    // The bucket check (ListObjectsV2, CreateBucket) before payloads and
    // manifests are written.
    Module {
        pattern: "sdk.rs",
        bake: Some(Uses::All),
        roll: None,
    },
    Module {
        pattern: "groups.rs",
        bake: Some(Uses::Only(&[
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeLifecycleHooks",
            "autoscaling:DescribeScheduledActions",
            "ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplateVersions",
        ])),
        roll: Some(Uses::All),
    },
    Module {
        pattern: "lb.rs",
        bake: Some(Uses::Only(&["elasticloadbalancing:DescribeTargetGroups"])),
        roll: Some(Uses::All),
    },
    Module {
        pattern: "lease.rs",
        bake: None,
        roll: Some(Uses::All),
    },
    Module {
        pattern: "template.rs",
        bake: None,
        roll: Some(Uses::All),
    },
    // `roll out --strategy instance-refresh`.
    Module {
        pattern: "refresh.rs",
        bake: None,
        roll: Some(Uses::All),
    },
    // Gates, `--alarm` gates, and `roll up/down --backend aws`: roll's.
    Module {
        pattern: "probe*",
        bake: None,
        roll: Some(Uses::All),
    },
    Module {
        pattern: "alarm*",
        bake: None,
        roll: Some(Uses::All),
    },
    Module {
        pattern: "cloudwatch*",
        bake: None,
        roll: Some(Uses::All),
    },
    Module {
        pattern: "setup*",
        bake: None,
        roll: Some(Uses::All),
    },
    // No calls of their own.
    Module {
        pattern: "mod.rs",
        bake: None,
        roll: None,
    },
    Module {
        pattern: "calls.rs",
        bake: None,
        roll: None,
    },
    Module {
        pattern: "error.rs",
        bake: None,
        roll: None,
    },
    Module {
        pattern: "unsupported.rs",
        bake: None,
        roll: None,
    },
];

/// `Ctx` fields (and `Ctx::ec2_in`) → the service's IAM prefix.
const CLIENTS: &[(&str, &str)] = &[
    ("ec2", "ec2"),
    ("ec2_in", "ec2"),
    ("s3", "s3"),
    ("ssm", "ssm"),
    ("autoscaling", "autoscaling"),
    ("elb", "elasticloadbalancing"),
    ("cloudwatch", "cloudwatch"),
];

/// SDK crates → IAM prefix, for parameters typed `&aws_sdk_x::Client`.
const CRATES: &[(&str, &str)] = &[
    ("aws_sdk_ec2", "ec2"),
    ("aws_sdk_s3", "s3"),
    ("aws_sdk_ssm", "ssm"),
    ("aws_sdk_autoscaling", "autoscaling"),
    ("aws_sdk_elasticloadbalancingv2", "elasticloadbalancing"),
    ("aws_sdk_cloudwatch", "cloudwatch"),
];

/// Operations whose IAM action is not named like the operation.
const RENAMED: &[(&str, &str)] = &[
    ("s3:ListObjectsV2", "s3:ListBucket"),
    ("s3:ListObjects", "s3:ListBucket"),
    ("s3:HeadBucket", "s3:ListBucket"),
    ("s3:HeadObject", "s3:GetObject"),
    ("s3:DeleteObjects", "s3:DeleteObject"),
    ("s3:GetObjectAttributes", "s3:GetObject"),
];

/// A request option that needs a second action besides the operation's
/// own: (action, builder method, the extra action). Tags at creation are
/// authorized as a tagging action of their own on EC2 and ELBv2, and S3's
/// `x-amz-tagging` on PutObject needs PutObjectTagging.
const OPTIONS: &[(&str, &str, &str)] = &[
    ("s3:PutObject", "tagging", "s3:PutObjectTagging"),
    ("ec2:RunInstances", "tag_specifications", "ec2:CreateTags"),
    (
        "ec2:CreateSecurityGroup",
        "tag_specifications",
        "ec2:CreateTags",
    ),
    ("ec2:CreateImage", "tag_specifications", "ec2:CreateTags"),
    ("ec2:CopyImage", "tag_specifications", "ec2:CreateTags"),
    (
        "ec2:CreateLaunchTemplate",
        "tag_specifications",
        "ec2:CreateTags",
    ),
    ("ec2:CreateSnapshot", "tag_specifications", "ec2:CreateTags"),
    ("ec2:CreateVolume", "tag_specifications", "ec2:CreateTags"),
    (
        "elasticloadbalancing:CreateLoadBalancer",
        "tags",
        "elasticloadbalancing:AddTags",
    ),
    (
        "elasticloadbalancing:CreateTargetGroup",
        "tags",
        "elasticloadbalancing:AddTags",
    ),
    (
        "elasticloadbalancing:CreateListener",
        "tags",
        "elasticloadbalancing:AddTags",
    ),
    (
        "elasticloadbalancing:CreateRule",
        "tags",
        "elasticloadbalancing:AddTags",
    ),
];

/// Actions AWS authorizes on the caller's behalf when it calls another
/// one, which no SDK call names: (the call, the action it needs too, why).
pub const IMPLIED: &[(&str, &str, &str)] = &[
    (
        "autoscaling:UpdateAutoScalingGroup",
        "ec2:RunInstances",
        "Auto Scaling checks that whoever points a group at a launch-template version may launch from it",
    ),
    (
        "autoscaling:UpdateAutoScalingGroup",
        "ec2:CreateTags",
        "…and may tag what it launches (the template's TagSpecifications)",
    ),
    (
        "autoscaling:CreateAutoScalingGroup",
        "ec2:RunInstances",
        "the same check when a group (a blue/green twin) is created from a launch template",
    ),
    (
        "autoscaling:CreateAutoScalingGroup",
        "ec2:CreateTags",
        "…and may tag what it launches",
    ),
];

/// One SDK call found in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// File name under cloud/src/aws/ (`groups.rs`, `setup/lb.rs`).
    pub file: String,
    pub line: usize,
    /// `service:Operation` as IAM names it (`ec2:DescribeImages`).
    pub action: String,
    /// Further actions this call needs (tags at creation).
    pub extra: Vec<String>,
}

/// The source directory of the aws backend.
pub fn aws_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/aws")
}

/// The workspace's policies/ directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Every SDK call in `dir` (recursively), or the calls it could not
/// attribute (file:line and why).
pub fn scan_dir(dir: &Path) -> Result<Vec<Call>, Vec<String>> {
    let mut files = Vec::new();
    collect_rs(dir, dir, &mut files);
    files.sort();
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    for (rel, path) in files {
        let src = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let (c, e) = scan_source(&rel, &src);
        calls.extend(c);
        errors.extend(e);
    }
    if errors.is_empty() {
        Ok(calls)
    } else {
        Err(errors)
    }
}

fn collect_rs(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
}

/// The SDK calls in one file's source, and the `.send()`s it could not
/// attribute. Test modules (`#[cfg(test)]`) are left out.
pub fn scan_source(file: &str, src: &str) -> (Vec<Call>, Vec<String>) {
    let code = strip_tests(&strip_comments_and_strings(src));
    let b = code.as_bytes();
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while let Some(off) = code[i..].find('.') {
        let dot = i + off;
        i = dot + 1;
        let (name, after) = ident_at(b, dot + 1);
        let ends_request = match name {
            "send" => {
                let j = skip_ws(b, after);
                b.get(j) == Some(&b'(') && b.get(skip_ws(b, j + 1)) == Some(&b')')
            }
            "presigned" => b.get(skip_ws(b, after)) == Some(&b'('),
            _ => false,
        };
        if !ends_request {
            continue;
        }
        let line = code[..dot].matches('\n').count() + 1;
        match attribute(&code, dot) {
            Ok((service, op, methods)) => {
                let action = iam_action(service, &op);
                let extra = OPTIONS
                    .iter()
                    .filter(|(a, m, _)| {
                        *a == action
                            && methods
                                .iter()
                                .any(|x| x == m || x.strip_prefix("set_") == Some(m))
                    })
                    .map(|(_, _, x)| (*x).to_owned())
                    .collect();
                calls.push(Call {
                    file: file.to_owned(),
                    line,
                    action,
                    extra,
                });
            }
            Err(why) => errors.push(format!("cloud/src/aws/{file}:{line}: {why}")),
        }
    }
    (calls, errors)
}

/// `describe_auto_scaling_groups` → `DescribeAutoScalingGroups`, then the
/// IAM name (`s3:ListObjectsV2` → `s3:ListBucket`).
pub fn iam_action(service: &str, op: &str) -> String {
    let pascal: String = op
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let action = format!("{service}:{pascal}");
    RENAMED
        .iter()
        .find(|(from, _)| *from == action)
        .map_or(action, |(_, to)| (*to).to_owned())
}

/// A chain segment: `.name` or `.name(..)`.
#[derive(Debug)]
struct Seg {
    name: String,
    call: bool,
}

/// What a name is bound to.
enum Binding {
    /// A client of this service.
    Client(&'static str),
    /// A request builder: service, operation, builder methods so far.
    Request(&'static str, String, Vec<String>),
}

/// The (service, operation, builder methods) of the request whose
/// `.send()`/`.presigned(` starts at `dot`.
fn attribute(code: &str, dot: usize) -> Result<(&'static str, String, Vec<String>), String> {
    let (root, segs) = chain_before(code, dot);
    let methods: Vec<String> = segs.iter().map(|s| s.name.clone()).collect();
    if let Some((service, op, _)) = from_segments(&segs) {
        return Ok((service, op, methods));
    }
    let Some(root) = root else {
        return Err("cannot find where this request's method chain starts".into());
    };
    match binding(code, &root, dot) {
        Some(Binding::Client(service)) => match segs.first() {
            Some(s) if s.call => Ok((service, s.name.clone(), methods)),
            _ => Err(format!("`{root}` is a client, but no operation follows it")),
        },
        Some(Binding::Request(service, op, mut before)) => {
            before.extend(methods);
            Ok((service, op, before))
        }
        None => Err(format!(
            "cannot tell which SDK client `{root}` is (bind it with `let {root} = ctx.<client>…` \
             or type it `&aws_sdk_…::Client`, or teach tests/policies/scan.rs)"
        )),
    }
}

/// The client, operation and the rest of a chain whose segments name a
/// client (`.ec2`, `.ec2_in(..)`), if they do.
fn from_segments(segs: &[Seg]) -> Option<(&'static str, String, usize)> {
    for (k, s) in segs.iter().enumerate() {
        let service = CLIENTS
            .iter()
            .find(|(f, _)| *f == s.name && (s.call == (*f == "ec2_in")));
        if let Some((_, service)) = service {
            return match segs.get(k + 1) {
                Some(op) if op.call => Some((service, op.name.clone(), k + 1)),
                _ => None,
            };
        }
    }
    None
}

/// What `name` is bound to at `pos`: the nearest `let [mut] name =` or
/// `name: [&]aws_sdk_x::Client` before it.
fn binding(code: &str, name: &str, pos: usize) -> Option<Binding> {
    let before = &code[..pos];
    let lets = [format!("let {name} ="), format!("let mut {name} =")];
    let let_at = lets
        .iter()
        .filter_map(|p| rfind_word(before, p).map(|i| (i + p.len(), true)))
        .max();
    let param_at = rfind_word(before, &format!("{name}:")).map(|i| (i + name.len() + 1, false));
    let (at, is_let) = match (let_at, param_at) {
        (Some(l), Some(p)) => l.max(p),
        (Some(l), None) => l,
        (None, Some(p)) => p,
        (None, None) => return None,
    };
    let b = code.as_bytes();
    if !is_let {
        let ty: String = code[at..]
            .chars()
            .skip_while(|c| c.is_whitespace() || *c == '&')
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let krate = ty.strip_suffix("::Client")?;
        return CRATES
            .iter()
            .find(|(c, _)| *c == krate)
            .map(|(_, s)| Binding::Client(s));
    }
    // The initializer, up to its `;` at depth 0.
    let end = statement_end(b, at)?;
    let (root, segs) = chain_before(code, end);
    if let Some((service, op, k)) = from_segments(&segs) {
        let methods = segs[k..].iter().map(|s| s.name.clone()).collect();
        return Some(Binding::Request(service, op, methods));
    }
    // `let req = ec2.describe_images()…` with `ec2` a client: a request.
    if let (Some(r), Some(first)) = (&root, segs.first())
        && first.call
        && let Some(Binding::Client(service)) = binding(code, r, at)
    {
        let methods = segs.iter().map(|s| s.name.clone()).collect();
        return Some(Binding::Request(service, first.name.clone(), methods));
    }
    // `&self.ctx.autoscaling`, `ctx.ec2_in(region)`: the chain ends at a
    // client.
    match segs.last() {
        Some(s) => CLIENTS
            .iter()
            .find(|(f, _)| *f == s.name && (s.call == (*f == "ec2_in")))
            .map(|(_, svc)| Binding::Client(svc)),
        None => root.and_then(|r| match binding(code, &r, at) {
            Some(Binding::Client(s)) => Some(Binding::Client(s)),
            _ => None,
        }),
    }
}

/// The last occurrence of `pat` in `s` that does not continue an
/// identifier on its left.
fn rfind_word(s: &str, pat: &str) -> Option<usize> {
    let mut end = s.len();
    while let Some(i) = s[..end].rfind(pat) {
        let left = s[..i].chars().next_back();
        if !left.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return Some(i);
        }
        end = i;
    }
    None
}

/// The position of the `;` ending the statement that starts at `from`.
fn statement_end(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, &c) in b.iter().enumerate().skip(from) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b';' if depth == 0 => return Some(k),
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

/// Walks back from `end` (just after a chain) over `.name`, `.name(..)`,
/// `?` and `.await` to the chain's root: the root's name (if it is a plain
/// name) and the segments in source order.
fn chain_before(code: &str, end: usize) -> (Option<String>, Vec<Seg>) {
    let b = code.as_bytes();
    let mut segs = Vec::new();
    let mut pos = end;
    loop {
        let mut p = skip_ws_back(b, pos);
        while p > 0 && b[p - 1] == b'?' {
            p = skip_ws_back(b, p - 1);
        }
        let call = p > 0 && b[p - 1] == b')';
        if call {
            match matching_open(b, p - 1) {
                Some(open) => p = skip_ws_back(b, open),
                None => return (None, rev(segs)),
            }
        }
        let mut start = ident_start(b, p);
        if start == p {
            return (None, rev(segs));
        }
        let name = &code[start..p];
        // A raw identifier (`.r#type(..)`).
        if start >= 2 && &b[start - 2..start] == b"r#" {
            start -= 2;
        }
        let q = skip_ws_back(b, start);
        if q > 0 && b[q - 1] == b'.' {
            if name != "await" {
                segs.push(Seg {
                    name: name.to_owned(),
                    call,
                });
            }
            pos = q - 1;
        } else {
            // A plain name (or a function call) starts the chain.
            let root = (!call).then(|| name.to_owned());
            return (root, rev(segs));
        }
    }
}

fn rev(mut v: Vec<Seg>) -> Vec<Seg> {
    v.reverse();
    v
}

fn matching_open(b: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut k = close + 1;
    while k > 0 {
        k -= 1;
        match b[k] {
            b')' | b']' | b'}' => depth += 1,
            b'(' | b'[' | b'{' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_at(b: &[u8], from: usize) -> (&str, usize) {
    let mut k = from;
    while k < b.len() && is_ident(b[k]) {
        k += 1;
    }
    (std::str::from_utf8(&b[from..k]).unwrap_or(""), k)
}

fn ident_start(b: &[u8], end: usize) -> usize {
    let mut k = end;
    while k > 0 && is_ident(b[k - 1]) {
        k -= 1;
    }
    k
}

fn skip_ws(b: &[u8], mut k: usize) -> usize {
    while k < b.len() && b[k].is_ascii_whitespace() {
        k += 1;
    }
    k
}

fn skip_ws_back(b: &[u8], mut k: usize) -> usize {
    while k > 0 && b[k - 1].is_ascii_whitespace() {
        k -= 1;
    }
    k
}

/// `src` with comments, string and char literals blanked (newlines kept,
/// so lines still count).
pub fn strip_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && !(i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for ch in &c[i..j.min(c.len())] {
                out.push(blank(*ch));
            }
            i = j;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime.
            let lit_end = if next == Some('\\') {
                (i + 2..c.len()).find(|&k| c[k] == '\'').map(|k| k + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match lit_end {
                Some(e) => {
                    for _ in i..e {
                        out.push(' ');
                    }
                    i = e;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` (already stripped) with every `#[cfg(test)]` item blanked.
fn strip_tests(code: &str) -> String {
    let mut out = code.to_owned();
    let attr = "#[cfg(test)]";
    let mut from = 0;
    while let Some(off) = out[from..].find(attr) {
        let at = from + off;
        let b = out.as_bytes();
        // The item ends at its `;` or at the `}` closing its first `{`.
        let mut k = at + attr.len();
        let mut end = b.len();
        while k < b.len() {
            if b[k] == b';' {
                end = k + 1;
                break;
            }
            if b[k] == b'{' {
                end = match matching_close(b, k) {
                    Some(c) => c + 1,
                    None => b.len(),
                };
                break;
            }
            k += 1;
        }
        let blanked: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blanked);
        from = at + blanked.len();
    }
    out
}

fn matching_close(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

// ---- who calls what ------------------------------------------------------

/// Per binary: each action it needs, with where the need comes from.
pub type Needed = BTreeMap<Bin, BTreeMap<String, Vec<String>>>;

fn matches(pattern: &str, file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    // A module in a directory (setup/lb.rs) goes by its directory's name.
    let top = file.split('/').next().unwrap_or(file);
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix) || top.starts_with(prefix),
        None => file == pattern,
    }
}

/// The actions each binary's code calls (with what the calls' options
/// need), and the problems found on the way: a file with calls that no
/// [`MODULES`] row covers, or an `Only` list naming an action its module
/// does not call.
pub fn actions_by_bin(calls: &[Call], modules: &[Module]) -> (Needed, Vec<String>) {
    let mut by_bin: BTreeMap<Bin, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    by_bin.insert(Bin::Bake, BTreeMap::new());
    by_bin.insert(Bin::Roll, BTreeMap::new());
    let mut problems = Vec::new();
    let mut files: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        files.entry(c.file.as_str()).or_default().push(c);
    }
    for (file, calls) in &files {
        let Some(m) = modules.iter().find(|m| matches(m.pattern, file)) else {
            problems.push(format!(
                "cloud/src/aws/{file} calls {} but is in no row of MODULES \
                 (tests/policies/scan.rs): say whether bake or roll uses it",
                calls[0].action
            ));
            continue;
        };
        if m.bake.is_none() && m.roll.is_none() {
            problems.push(format!(
                "cloud/src/aws/{file}:{} calls {}, but MODULES says it calls nothing: \
                 say whether bake or roll uses it",
                calls[0].line, calls[0].action
            ));
        }
        let in_file: BTreeSet<&str> = calls
            .iter()
            .flat_map(|c| {
                std::iter::once(c.action.as_str()).chain(c.extra.iter().map(String::as_str))
            })
            .collect();
        for (bin, uses) in [(Bin::Bake, m.bake), (Bin::Roll, m.roll)] {
            let Some(uses) = uses else { continue };
            let set = by_bin.entry(bin).or_default();
            let mut add = |action: &str, why: String| {
                set.entry(action.to_owned()).or_default().push(why);
            };
            match uses {
                Uses::All => {
                    for c in calls {
                        add(&c.action, format!("cloud/src/aws/{}:{}", c.file, c.line));
                        for x in &c.extra {
                            add(
                                x,
                                format!(
                                    "cloud/src/aws/{}:{} ({} option)",
                                    c.file, c.line, c.action
                                ),
                            );
                        }
                    }
                }
                Uses::Only(list) => {
                    for a in list {
                        if in_file.contains(a) {
                            add(a, format!("cloud/src/aws/{file} (listed in MODULES)"));
                        } else {
                            problems.push(format!(
                                "MODULES says {bin:?} uses {a} of cloud/src/aws/{file}, \
                                 which does not call it"
                            ));
                        }
                    }
                }
            }
        }
    }
    for set in by_bin.values_mut() {
        let implied: Vec<(&str, &str)> = IMPLIED
            .iter()
            .filter(|(by, _, _)| set.contains_key(*by))
            .map(|(by, a, _)| (*by, *a))
            .collect();
        for (by, a) in implied {
            set.entry(a.to_owned())
                .or_default()
                .push(format!("implied by {by}"));
        }
    }
    (by_bin, problems)
}

// ---- policies ------------------------------------------------------------

/// Every action a policy document allows, with the Sid allowing it.
pub fn policy_actions(doc: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    let statements = doc["Statement"]
        .as_array()
        .ok_or("the policy has no Statement list")?;
    let mut out = BTreeMap::new();
    for s in statements {
        let sid = s["Sid"].as_str().ok_or("a statement without a Sid")?;
        if s["Effect"] != "Allow" {
            continue;
        }
        if s.get("Resource").is_none() {
            return Err(format!("{sid}: no Resource"));
        }
        let actions: Vec<&str> = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => return Err(format!("{sid}: Action is neither a string nor a list")),
        };
        for a in actions {
            if a.contains('*') || a.contains('?') {
                return Err(format!("{sid}: {a} is a wildcard; name each action"));
            }
            out.entry(a.to_owned()).or_insert_with(|| sid.to_owned());
        }
    }
    Ok(out)
}

/// Compares what the code needs with what a policy allows. `omitted`:
/// actions the code can call that the policy leaves out on purpose (an
/// opt-in flag); `ahead`: actions the policy may list before the code
/// calls them (work in progress elsewhere), each with why. `Err` says
/// what is missing and what is extra, with where each need comes from.
pub fn compare(
    name: &str,
    needed: &BTreeMap<String, Vec<String>>,
    allowed: &BTreeMap<String, String>,
    omitted: &[(&str, &str)],
    ahead: &[(&str, &str)],
) -> Result<(), String> {
    let is_omitted = |a: &str| omitted.iter().any(|(o, _)| *o == a);
    let is_ahead = |a: &str| ahead.iter().any(|(o, _)| *o == a);
    let missing: Vec<String> = needed
        .iter()
        .filter(|(a, _)| !allowed.contains_key(*a) && !is_omitted(a))
        .map(|(a, from)| format!("  {a}  (called at {})", from.join(", ")))
        .collect();
    let extra: Vec<String> = allowed
        .iter()
        .filter(|(a, _)| !needed.contains_key(*a) && !is_ahead(a))
        .map(|(a, sid)| format!("  {a}  (statement {sid})"))
        .collect();
    let granted_anyway: Vec<String> = omitted
        .iter()
        .filter(|(a, _)| allowed.contains_key(*a))
        .map(|(a, why)| format!("  {a}  (left out on purpose: {why})"))
        .collect();
    if missing.is_empty() && extra.is_empty() && granted_anyway.is_empty() {
        return Ok(());
    }
    let mut msg = format!("policies/{name}.json does not match what the code calls.\n");
    if !missing.is_empty() {
        msg += &format!(
            "The code calls, and the policy does not allow (add them, in a statement \
             with a Sid saying what they are for, scoped by tag where AWS allows it; \
             see policies/README.md):\n{}\n",
            missing.join("\n")
        );
    }
    if !extra.is_empty() {
        msg += &format!(
            "The policy allows, and no code calls (remove them):\n{}\n",
            extra.join("\n")
        );
    }
    if !granted_anyway.is_empty() {
        msg += &format!("The policy allows:\n{}\n", granted_anyway.join("\n"));
    }
    Err(msg)
}

/// Reads and parses policies/<name>.json.
pub fn read_policy(name: &str) -> serde_json::Value {
    let path = policies_dir().join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The actions each binary needs, from the source; panics with every
/// problem the scan found.
pub fn needed_by_bin() -> Needed {
    let calls = scan_dir(&aws_src()).unwrap_or_else(|errors| {
        panic!(
            "SDK calls the scanner cannot attribute:\n{}",
            errors.join("\n")
        )
    });
    let (by_bin, problems) = actions_by_bin(&calls, MODULES);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    by_bin
}

/// Actions the code may call that a policy leaves out on purpose.
pub const BAKE_OMITTED: &[(&str, &str)] = &[(
    "s3:CreateBucket",
    "only with --aws-create-bucket; make the bucket once (Terraform) and bake never needs it",
)];
pub const ROLL_OMITTED: &[(&str, &str)] = &[];

/// Actions a policy lists before the code calls them.
pub const BAKE_AHEAD: &[(&str, &str)] = &[];
pub const ROLL_AHEAD: &[(&str, &str)] = &[(
    "cloudwatch:DescribeAlarms",
    "`--alarm` gates (a CloudWatch alarm in ALARM fails the roll), being added in cloud/src/aws/alarm*.rs",
)];

/// The IAM action of a call as `cloud::aws::ApiCalls` counts it
/// (`ElasticLoadBalancingv2.ModifyListener` →
/// `elasticloadbalancing:ModifyListener`).
pub fn action_of_counted(key: &str) -> Option<String> {
    let (service, op) = key.split_once('.')?;
    // SDK versions spell the service differently (`AutoScaling`, `Auto
    // Scaling`).
    let service: String = service
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let prefix = match service.as_str() {
        "ec2" => "ec2",
        "s3" => "s3",
        "ssm" => "ssm",
        "autoscaling" => "autoscaling",
        "elasticloadbalancingv2" => "elasticloadbalancing",
        "cloudwatch" => "cloudwatch",
        _ => return None,
    };
    let action = format!("{prefix}:{op}");
    Some(
        RENAMED
            .iter()
            .find(|(from, _)| *from == action)
            .map_or(action, |(_, to)| (*to).to_owned()),
    )
}
