//! Per-key rate limits after seed 003's table (GCRA via `governor`): a
//! class allows `count` requests per `window`, refilled smoothly.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::ApiFailure;

/// `count` requests per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl Rate {
    pub const fn new(count: u32, window: Duration) -> Self {
        Self { count, window }
    }

    fn quota(self) -> Quota {
        let count = NonZeroU32::new(self.count.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = self.window / count.get();
        Quota::with_period(period.max(Duration::from_nanos(1))).unwrap_or(Quota::per_second(count)).allow_burst(count)
    }
}

/// The configured rates, defaulting to seed 003's table.
#[derive(Debug, Clone, Copy)]
pub struct RateConfig {
    /// Code requests per client address (codes per phone have their own rules).
    pub send_code: Rate,
    /// Login attempts per phone.
    pub login: Rate,
    /// Uploads per user.
    pub upload: Rate,
    /// Every other API request, per user (or per address before login).
    pub other: Rate,
    /// Pairing invitations made, per user (seed 004).
    pub invite: Rate,
}

impl Default for RateConfig {
    fn default() -> Self {
        const HOUR: Duration = Duration::from_secs(3_600);
        Self {
            send_code: Rate::new(20, HOUR),
            login: Rate::new(10, Duration::from_secs(15 * 60)),
            upload: Rate::new(50, HOUR),
            other: Rate::new(1_000, HOUR),
            invite: Rate::new(20, HOUR),
        }
    }
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    SendCode,
    Login,
    Upload,
    Other,
    Invite,
}

/// governor's clock on tokio's time, so a test can pause and advance it.
#[derive(Debug, Clone)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self { epoch: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.epoch.elapsed())
    }
}

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<Nanos>>;

/// The limiters. Memory grows with distinct keys; [`RateLimits::prune`]
/// forgets keys that are back at full allowance.
#[derive(Debug)]
pub struct RateLimits {
    send_code: Limiter,
    login: Limiter,
    upload: Limiter,
    other: Limiter,
    invite: Limiter,
    clock: TokioClock,
}

impl RateLimits {
    pub fn new(config: RateConfig) -> Self {
        let clock = TokioClock::default();
        let limiter = |rate: Rate| RateLimiter::new(rate.quota(), DefaultKeyedStateStore::default(), clock.clone());
        Self {
            send_code: limiter(config.send_code),
            login: limiter(config.login),
            upload: limiter(config.upload),
            other: limiter(config.other),
            invite: limiter(config.invite),
            clock,
        }
    }

    fn limiter(&self, class: Class) -> &Limiter {
        match class {
            Class::SendCode => &self.send_code,
            Class::Login => &self.login,
            Class::Upload => &self.upload,
            Class::Other => &self.other,
            Class::Invite => &self.invite,
        }
    }

    /// Counts one request of `class` for `key`; 429 with `Retry-After` when
    /// the allowance is spent.
    pub fn check(&self, class: Class, key: &str) -> Result<(), ApiFailure> {
        self.limiter(class).check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            metrics::counter!("switchboard_rate_limited_total", "class" => format!("{class:?}")).increment(1);
            ApiFailure::too_many(
                format!("too many requests ({class:?}); retry later"),
                wait.as_secs_f64().ceil() as u64,
            )
        })
    }

    /// Forgets keys that are back at their full allowance.
    pub fn prune(&self) {
        for limiter in [&self.send_code, &self.login, &self.upload, &self.other, &self.invite] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Failed logins per account, and the delay they earn: a guesser is slowed
/// down on every address at once, while the owner (from anywhere) is only
/// ever delayed, never locked out. Counted per process; quiet accounts
/// are forgotten.
#[derive(Debug, Default)]
pub struct LoginBackoff {
    failures: dashmap::DashMap<String, (u32, tokio::time::Instant)>,
}

/// Failures answered without delay.
const FREE_FAILURES: u32 = 3;
/// The first delay, doubled with each failure after the free ones.
const FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest delay.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(4);
/// Failures are forgotten after this long without another.
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl LoginBackoff {
    /// How long an attempt at `account` waits before it is checked.
    pub fn delay(&self, account: &str) -> std::time::Duration {
        let Some(entry) = self.failures.get(account) else { return std::time::Duration::ZERO };
        let (failures, last) = *entry;
        if last.elapsed() > FAILURE_MEMORY || failures <= FREE_FAILURES {
            return std::time::Duration::ZERO;
        }
        let doublings = (failures - FREE_FAILURES - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// A wrong password or code for `account`.
    pub fn failed(&self, account: &str) {
        let now = tokio::time::Instant::now();
        let mut entry = self.failures.entry(account.to_owned()).or_insert((0, now));
        let (failures, last) = *entry;
        let failures = if last.elapsed() > FAILURE_MEMORY { 0 } else { failures };
        *entry = (failures.saturating_add(1), now);
        metrics::counter!("switchboard_login_failures_total").increment(1);
    }

    /// A successful login: the account's count starts again.
    pub fn succeeded(&self, account: &str) {
        self.failures.remove(account);
    }

    /// Forgets accounts quiet for long enough.
    pub fn prune(&self) {
        self.failures.retain(|_, (_, last)| last.elapsed() <= FAILURE_MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Class, Rate, RateConfig, RateLimits};

    #[tokio::test(start_paused = true)]
    async fn failed_logins_earn_a_growing_delay_that_fades() {
        let backoff = super::LoginBackoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| {
                backoff.failed("13800000000");
                u64::try_from(backoff.delay("13800000000").as_millis()).unwrap()
            })
            .collect();
        assert_eq!(delays, [0, 0, 0, 250, 500, 1_000, 2_000, 4_000, 4_000]);
        assert_eq!(backoff.delay("13800000001"), Duration::ZERO, "per account");
        tokio::time::advance(Duration::from_secs(15 * 60 + 1)).await;
        assert_eq!(backoff.delay("13800000000"), Duration::ZERO, "forgotten after a quiet while");
        backoff.failed("13800000000");
        backoff.succeeded("13800000000");
        assert_eq!(backoff.delay("13800000000"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_allowance_refills_with_time_and_says_when() {
        let hour = Duration::from_secs(3_600);
        let limits = RateLimits::new(RateConfig { login: Rate::new(2, hour), ..RateConfig::default() });
        assert!(limits.check(Class::Login, "13800000000").is_ok());
        assert!(limits.check(Class::Login, "13800000000").is_ok());
        let refused = limits.check(Class::Login, "13800000000").unwrap_err();
        assert_eq!(refused.retry_after, Some(1_800), "one request back every half hour");
        assert!(limits.check(Class::Login, "another phone").is_ok(), "keys are counted apart");

        tokio::time::advance(Duration::from_secs(1_799)).await;
        assert!(limits.check(Class::Login, "13800000000").is_err(), "not yet");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check(Class::Login, "13800000000").is_ok(), "refilled on tokio's clock");
    }
}
