//! Per-key rate limits after seed 003's table (GCRA via `governor`): a
//! class allows `count` requests per `window`, refilled smoothly.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

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
}

impl Default for RateConfig {
    fn default() -> Self {
        const HOUR: Duration = Duration::from_secs(3_600);
        Self {
            send_code: Rate::new(20, HOUR),
            login: Rate::new(10, Duration::from_secs(15 * 60)),
            upload: Rate::new(50, HOUR),
            other: Rate::new(1_000, HOUR),
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
}

/// The limiters. Memory grows with distinct keys; [`RateLimits::prune`]
/// forgets keys that are back at full allowance.
#[derive(Debug)]
pub struct RateLimits {
    send_code: DefaultKeyedRateLimiter<String>,
    login: DefaultKeyedRateLimiter<String>,
    upload: DefaultKeyedRateLimiter<String>,
    other: DefaultKeyedRateLimiter<String>,
}

impl RateLimits {
    pub fn new(config: RateConfig) -> Self {
        Self {
            send_code: RateLimiter::keyed(config.send_code.quota()),
            login: RateLimiter::keyed(config.login.quota()),
            upload: RateLimiter::keyed(config.upload.quota()),
            other: RateLimiter::keyed(config.other.quota()),
        }
    }

    fn limiter(&self, class: Class) -> &DefaultKeyedRateLimiter<String> {
        match class {
            Class::SendCode => &self.send_code,
            Class::Login => &self.login,
            Class::Upload => &self.upload,
            Class::Other => &self.other,
        }
    }

    /// Counts one request of `class` for `key`; 429 with `Retry-After` when
    /// the allowance is spent.
    pub fn check(&self, class: Class, key: &str) -> Result<(), ApiFailure> {
        self.limiter(class).check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            metrics::counter!("switchboard_rate_limited_total", "class" => format!("{class:?}")).increment(1);
            ApiFailure::too_many(
                format!("too many requests ({class:?}); retry later"),
                wait.as_secs_f64().ceil() as u64,
            )
        })
    }

    /// Forgets keys that are back at their full allowance.
    pub fn prune(&self) {
        for limiter in [&self.send_code, &self.login, &self.upload, &self.other] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
