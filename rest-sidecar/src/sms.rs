//! SMS verification codes: 6 digits, valid 5 minutes, one send per 60 s
//! and at most 5 per hour per phone, burned after 5 wrong tries, single use.
//! Delivery is a trait; the default sender writes the code to the log.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use rand::Rng;
use serde::Deserialize;

/// What a code is for; a code for one purpose never works for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    Register,
    Login,
    Reset,
}

/// Delivers a code to a phone.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, phone: &str, code: &str, purpose: CodePurpose) -> Result<(), String>;
}

/// The default sender: logs the code (a development and test stand-in for
/// an SMS gateway; codes in logs are secrets, so production configures a
/// real sender).
#[derive(Debug, Default)]
pub struct LogSms;

#[async_trait]
impl SmsSender for LogSms {
    async fn send(&self, phone: &str, code: &str, purpose: CodePurpose) -> Result<(), String> {
        tracing::info!(phone, code, ?purpose, "sms code (log sender)");
        Ok(())
    }
}

/// The rules, in milliseconds and counts.
#[derive(Debug, Clone)]
pub struct SmsRules {
    pub valid_ms: i64,
    pub resend_after_ms: i64,
    pub per_hour: usize,
    pub max_wrong_tries: u8,
}

impl Default for SmsRules {
    fn default() -> Self {
        Self { valid_ms: 5 * 60_000, resend_after_ms: 60_000, per_hour: 5, max_wrong_tries: 5 }
    }
}

#[derive(Debug)]
struct Pending {
    code: String,
    sent_at: i64,
    wrong_tries: u8,
}

/// A sent code.
#[derive(Debug)]
pub struct SentCode {
    pub code: String,
    pub expires_in_secs: u64,
    pub retry_after_secs: u64,
}

/// Why a code was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendCodeError {
    #[error("wait {0} s before asking for another code")]
    TooSoon(u64),
    #[error("too many codes for this phone; try again in {0} s")]
    TooMany(u64),
    #[error("the code could not be delivered: {0}")]
    Delivery(String),
}

/// Issues and checks codes. Cheap to clone.
#[derive(Clone)]
pub struct SmsCodes {
    /// The live code per phone and purpose. Guards are never held across
    /// the sender's await.
    pending: Arc<DashMap<(String, CodePurpose), Pending>>,
    /// Send times per phone within the last hour.
    history: Arc<DashMap<String, VecDeque<i64>>>,
    sender: Arc<dyn SmsSender>,
    rules: SmsRules,
}

impl std::fmt::Debug for SmsCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsCodes").field("rules", &self.rules).finish_non_exhaustive()
    }
}

const HOUR_MS: i64 = 3_600_000;

fn secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

impl SmsCodes {
    pub fn new(sender: Arc<dyn SmsSender>, rules: SmsRules) -> Self {
        Self { pending: Arc::default(), history: Arc::default(), sender, rules }
    }

    /// Sends a new code for `phone` and `purpose`, replacing any earlier one.
    pub async fn send(&self, phone: &str, purpose: CodePurpose, now: i64) -> Result<SentCode, SendCodeError> {
        let key = (phone.to_owned(), purpose);
        if let Some(pending) = self.pending.get(&key) {
            let wait = pending.sent_at + self.rules.resend_after_ms - now;
            if wait > 0 {
                return Err(SendCodeError::TooSoon(secs(wait)));
            }
        }
        {
            let mut sent = self.history.entry(phone.to_owned()).or_default();
            while sent.front().is_some_and(|&at| at <= now - HOUR_MS) {
                sent.pop_front();
            }
            if sent.len() >= self.rules.per_hour {
                let oldest = sent.front().copied().unwrap_or(now);
                return Err(SendCodeError::TooMany(secs(oldest + HOUR_MS - now)));
            }
            sent.push_back(now);
        }
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
        self.pending.insert(key.clone(), Pending { code: code.clone(), sent_at: now, wrong_tries: 0 });
        if let Err(error) = self.sender.send(phone, &code, purpose).await {
            self.pending.remove(&key);
            return Err(SendCodeError::Delivery(error));
        }
        metrics::counter!("switchboard_sms_codes_sent_total").increment(1);
        Ok(SentCode {
            code,
            expires_in_secs: secs(self.rules.valid_ms),
            retry_after_secs: secs(self.rules.resend_after_ms),
        })
    }

    /// Spends the code if it matches; wrong tries count towards burning it.
    pub fn verify(&self, phone: &str, purpose: CodePurpose, code: &str, now: i64) -> bool {
        let key = (phone.to_owned(), purpose);
        let Some(mut pending) = self.pending.get_mut(&key) else { return false };
        if now - pending.sent_at > self.rules.valid_ms {
            drop(pending);
            self.pending.remove(&key);
            return false;
        }
        let matches: bool = subtle::ConstantTimeEq::ct_eq(pending.code.as_bytes(), code.as_bytes()).into();
        if matches {
            drop(pending);
            self.pending.remove(&key);
            return true;
        }
        pending.wrong_tries += 1;
        let burned = pending.wrong_tries >= self.rules.max_wrong_tries;
        drop(pending);
        if burned {
            self.pending.remove(&key);
        }
        false
    }

    /// Forgets expired codes and old history.
    pub fn prune(&self, now: i64) {
        self.pending.retain(|_, pending| now - pending.sent_at <= self.rules.valid_ms);
        self.history.retain(|_, sent| sent.back().is_some_and(|&at| at > now - HOUR_MS));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{CodePurpose, LogSms, SendCodeError, SmsCodes, SmsRules};

    #[tokio::test]
    async fn codes_follow_the_rules() {
        let codes = SmsCodes::new(Arc::new(LogSms), SmsRules::default());
        let sent = codes.send("13800000000", CodePurpose::Login, 0).await.unwrap();
        assert_eq!(sent.code.len(), 6);
        assert_eq!((sent.expires_in_secs, sent.retry_after_secs), (300, 60));
        assert!(matches!(codes.send("13800000000", CodePurpose::Login, 30_000).await, Err(SendCodeError::TooSoon(30))));
        assert!(!codes.verify("13800000000", CodePurpose::Register, &sent.code, 1), "purpose-bound");
        assert!(codes.verify("13800000000", CodePurpose::Login, &sent.code, 1));
        assert!(!codes.verify("13800000000", CodePurpose::Login, &sent.code, 2), "single use");

        let sent = codes.send("13800000000", CodePurpose::Login, 60_000).await.unwrap();
        assert!(!codes.verify("13800000000", CodePurpose::Login, &sent.code, 60_000 + 300_001), "expired");

        let sent = codes.send("13800000000", CodePurpose::Login, 120_000).await.unwrap();
        let wrong = if sent.code == "000000" { "111111" } else { "000000" };
        for _ in 0..5 {
            assert!(!codes.verify("13800000000", CodePurpose::Login, wrong, 120_001));
        }
        assert!(!codes.verify("13800000000", CodePurpose::Login, &sent.code, 120_002), "burned after 5 wrong tries");
    }

    #[tokio::test]
    async fn at_most_five_an_hour() {
        let codes = SmsCodes::new(Arc::new(LogSms), SmsRules::default());
        for n in 0..5 {
            codes.send("1", CodePurpose::Login, n * 61_000).await.unwrap();
        }
        match codes.send("1", CodePurpose::Login, 5 * 61_000).await {
            Err(SendCodeError::TooMany(wait)) => assert_eq!(wait, 3_600 - 305),
            other => panic!("expected TooMany, got {other:?}"),
        }
        assert!(codes.send("1", CodePurpose::Login, 3_600_001).await.is_ok(), "the hour has passed");
        assert!(codes.send("2", CodePurpose::Login, 5 * 61_000).await.is_ok(), "per phone");
    }
}
