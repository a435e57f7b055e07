//! Helpers for `make bench` (see `bench/README.md`).
//!
//! - [`fixed_json_body`]: the body the `fixed-body` peer answers with.
//! - [`rng`]: a small deterministic PRNG and a Zipf sampler (no dependency
//!   whose stream could change between versions: a seed always gives the
//!   same corpus).
//! - [`corpus`]: the synthetic corpus, its index definition and query mix.
//! - [`report`]: turns the bench's raw measurements into the table and
//!   `results.json`.

pub mod corpus;
pub mod report;
pub mod rng;

/// A valid JSON document of exactly `size` bytes (for `size >= 2`; shorter
/// sizes give that many spaces): `{"pad":"xxx…"}` padded to length, the
/// shape of a small search answer.
pub fn fixed_json_body(size: usize) -> Vec<u8> {
    const HEAD: &[u8] = br#"{"pad":""#;
    const TAIL: &[u8] = br#""}"#;
    if size >= HEAD.len() + TAIL.len() {
        let mut v = Vec::with_capacity(size);
        v.extend_from_slice(HEAD);
        v.resize(size - TAIL.len(), b'x');
        v.extend_from_slice(TAIL);
        v
    } else if size >= 2 {
        let mut v = vec![b' '; size];
        v[0] = b'{';
        v[size - 1] = b'}';
        v
    } else {
        vec![b' '; size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_exact_size_and_is_json() {
        for size in [2usize, 5, 9, 10, 11, 100, 1234, 65536] {
            let b = fixed_json_body(size);
            assert_eq!(b.len(), size);
            serde_json::from_slice::<serde_json::Value>(&b).expect("valid JSON");
        }
        assert_eq!(fixed_json_body(0).len(), 0);
        assert_eq!(fixed_json_body(1).len(), 1);
    }
}
