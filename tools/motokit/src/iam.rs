//! IAM users for moto's IAM enforcement tests, made with plain query-API
//! requests (IAM is not among kiln's SDK crates, and three calls do not
//! warrant one). They must be made before [`Moto::enforce_iam`]: after it,
//! moto checks signatures and these requests are not signed.

use crate::Moto;

/// An IAM user with one inline policy and an access key.
#[derive(Debug, Clone)]
pub struct IamUser {
    pub name: String,
    pub key: String,
    pub secret: String,
}

impl Moto {
    /// Creates `name` with `policy` (a JSON policy document) as its only
    /// policy, and an access key for it.
    pub fn iam_user(&self, name: &str, policy: &str) -> IamUser {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "kiln-test"),
            ("PolicyDocument", policy),
        ]);
        let body = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        IamUser {
            name: name.to_owned(),
            key: xml_field(&body, "AccessKeyId"),
            secret: xml_field(&body, "SecretAccessKey"),
        }
    }

    fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = String::from("Version=2010-05-08");
        for (k, v) in params {
            form.push('&');
            form.push_str(k);
            form.push('=');
            form.push_str(&form_encode(v));
        }
        // moto routes a request by the service in the credential scope; the
        // signature is not checked while enforcement is off.
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let (status, body) = self
            .http(
                "POST",
                "/",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Authorization", auth),
                ],
                form.as_bytes(),
            )
            .expect("IAM request to moto");
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "IAM {params:?}: {body}");
        body
    }
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(v, _)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no <{tag}> in IAM answer: {xml}"))
}
