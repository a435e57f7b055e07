//! Optional bearer-token authentication (`--tokens-file`).
//!
//! The file holds one token a line; blank lines and `#` comments are
//! skipped. Only the tokens' sha256 digests are kept in memory, and a
//! presented token is hashed and compared with every digest in constant
//! time, so neither the comparison nor the tokens' lengths leak through
//! timing. Tokens never appear in logs or error messages (errors name the
//! file and line number only).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The accepted tokens, as sha256 digests.
#[derive(Clone)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} tokens)", self.digests.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tokens file {path} holds no token (one token a line, `#` starts a comment)")]
    Empty { path: PathBuf },
    #[error(
        "tokens file {path}, line {line}: a token must be printable ASCII without spaces (RFC 6750 token68)"
    )]
    Invalid { path: PathBuf, line: usize },
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// RFC 6750's `b64token` (token68): what may follow `Bearer `.
fn is_token68(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text, path)
    }

    /// Parses the file's text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Tokens, TokensError> {
        let mut digests = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if !is_token68(t) {
                return Err(TokensError::Invalid {
                    path: path.to_path_buf(),
                    line: i + 1,
                });
            }
            digests.push(digest(t.as_bytes()));
        }
        if digests.is_empty() {
            return Err(TokensError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens { digests })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the tokens
    /// (`Bearer <token>`, scheme case-insensitive).
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(token) = bearer_token(value) else {
            return false;
        };
        let presented = digest(token);
        // Compare with every digest, without stopping early.
        let mut found = 0u8;
        for d in &self.digests {
            found |= u8::from(ct_eq(d, &presented));
        }
        found == 1
    }
}

/// The token of `Bearer <token>`, if the header has that shape.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Constant-time equality of two digests.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<Tokens, TokensError> {
        Tokens::parse(text, Path::new("tokens"))
    }

    #[test]
    fn parses_tokens_and_comments() {
        let t = tokens("# ops\n\n  s3cr3t-token  \nother.token==\n").unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.allows(Some(b"Bearer s3cr3t-token")));
        assert!(t.allows(Some(b"bearer   other.token==  ")));
        assert!(t.allows(Some(b"BEARER other.token==")));
        assert!(!t.allows(Some(b"Bearer s3cr3t")));
        assert!(!t.allows(Some(b"Bearer s3cr3t-token2")));
        assert!(!t.allows(Some(b"Basic s3cr3t-token")));
        assert!(!t.allows(Some(b"Bearers3cr3t-token")));
        assert!(!t.allows(Some(b"Bearer ")));
        assert!(!t.allows(Some(b"Bearer")));
        assert!(!t.allows(Some(b"")));
        assert!(!t.allows(None));
    }

    #[test]
    fn refuses_empty_and_invalid_files_without_echoing_tokens() {
        assert!(matches!(
            tokens("# nothing\n\n"),
            Err(TokensError::Empty { .. })
        ));
        let err = tokens("good\nbad token\n").unwrap_err();
        assert!(matches!(err, TokensError::Invalid { line: 2, .. }));
        assert!(!err.to_string().contains("bad token"));
        assert!(!format!("{:?}", tokens("good").unwrap()).contains("good"));
    }
}
