//! Waiting is a value: [`WaitParams`] says how long and how often, and
//! [`wait_until`] is the only polling loop in kiln. It sleeps with tokio's
//! clock, so tests pause time (`tokio::time::pause`) instead of sleeping.

use std::future::Future;
use std::time::Duration;

use crate::error::{CloudError, Result};

/// How to wait for a condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitParams {
    /// Give up after this long (measured on tokio's clock).
    pub timeout: Duration,
    /// The first pause between polls.
    pub interval: Duration,
    /// Each pause is the previous one times this (>= 1.0), capped at
    /// `max_interval`, then jittered by up to ±20% so many waiters do not
    /// poll an API in lockstep.
    pub backoff: f64,
    pub max_interval: Duration,
}

impl WaitParams {
    /// Local operations: fast polls, short overall limit.
    pub const LOCAL: WaitParams = WaitParams {
        timeout: Duration::from_secs(300),
        interval: Duration::from_millis(5),
        backoff: 1.5,
        max_interval: Duration::from_millis(200),
    };

    /// Cloud API polling (instance state, image availability).
    pub const CLOUD: WaitParams = WaitParams {
        timeout: Duration::from_secs(30 * 60),
        interval: Duration::from_secs(2),
        backoff: 1.5,
        max_interval: Duration::from_secs(30),
    };

    pub fn with_timeout(self, timeout: Duration) -> WaitParams {
        WaitParams { timeout, ..self }
    }

    /// The un-jittered pause before poll number `n` (0-based). Pure.
    pub fn pause(&self, n: u32) -> Duration {
        let factor = self.backoff.max(1.0).powi(n.min(64) as i32);
        let secs = (self.interval.as_secs_f64() * factor).min(self.max_interval.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Polls `check` until it returns `Ok(Some(v))`, then returns `v`.
/// `Ok(None)` means "not yet"; an error ends the wait at once. Returns
/// [`CloudError::Timeout`] naming `what` when `params.timeout` passes.
pub async fn wait_until<T, F, Fut>(params: WaitParams, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + params.timeout;
    let mut n = 0u32;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(CloudError::Timeout {
                what: what.to_owned(),
                after: now - start,
            });
        }
        let jitter = 0.8 + 0.4 * fastrand::f64();
        let pause = params.pause(n).mul_f64(jitter).min(deadline - now);
        tokio::time::sleep(pause).await;
        n = n.saturating_add(1);
    }
}

/// Like [`wait_until`], but `check` must answer `Some` on `n` polls in a
/// row (coldsnap's `successes_required`): a state that flaps does not pass
/// on one lucky poll. Returns the last value.
pub async fn wait_consecutive<T, F, Fut>(
    params: WaitParams,
    what: &str,
    n: u32,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    use std::sync::atomic::{AtomicU32, Ordering};
    let streak = AtomicU32::new(0);
    let streak = &streak;
    wait_until(params, what, || {
        let polled = check();
        async move {
            match polled.await? {
                Some(v) => {
                    let now = streak.fetch_add(1, Ordering::Relaxed) + 1;
                    Ok((now >= n.max(1)).then_some(v))
                }
                None => {
                    streak.store(0, Ordering::Relaxed);
                    Ok(None)
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn pauses_grow_and_cap() {
        let p = WaitParams {
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            backoff: 2.0,
            max_interval: Duration::from_secs(5),
        };
        let pauses: Vec<u64> = (0..5).map(|n| p.pause(n).as_secs()).collect();
        assert_eq!(pauses, vec![1, 2, 4, 5, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_when_ready() {
        let polls = AtomicU32::new(0);
        let v = wait_until(WaitParams::CLOUD, "thing", || async {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            Ok((n == 3).then_some(n))
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_name() {
        let started = tokio::time::Instant::now();
        let err = wait_until(WaitParams::CLOUD, "image ami-1 available", || async {
            Ok::<Option<()>, _>(None)
        })
        .await
        .unwrap_err();
        assert!(matches!(err, CloudError::Timeout { .. }));
        assert!(err.to_string().contains("image ami-1 available"));
        // Paused clock: exactly the timeout elapsed, no real sleeping.
        assert_eq!(started.elapsed(), WaitParams::CLOUD.timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_state_needs_n_in_a_row() {
        // healthy, healthy, unhealthy, healthy x3: passes on the 6th poll.
        let seq = [true, true, false, true, true, true, true];
        let polls = AtomicU32::new(0);
        let n = wait_consecutive(WaitParams::LOCAL, "flapping", 3, || async {
            let i = polls.fetch_add(1, Ordering::SeqCst) as usize;
            Ok(seq[i.min(seq.len() - 1)].then_some(i))
        })
        .await
        .unwrap();
        assert_eq!(n, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_end_the_wait() {
        let err = wait_until(WaitParams::LOCAL, "x", || async {
            Err::<Option<()>, _>(CloudError::invalid("x", "broken"))
        })
        .await
        .unwrap_err();
        assert!(err.is_bad_input());
    }
}
