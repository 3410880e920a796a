//! Command budgets: a token bucket per connection, and one per user that
//! all of the user's connections on this node draw from, so opening more
//! sockets does not buy more commands.

use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use storage::model::UserId;
use tokio::time::Instant;

/// A token bucket on tokio's clock (tests pause it): `rate` tokens a
/// second, holding at most two seconds' worth.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    refilled: Instant,
    rate: f64,
}

impl Bucket {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self { tokens: rate * 2.0, refilled: Instant::now(), rate }
    }

    /// Whether a token is there at `now` (refilling first); takes nothing.
    fn has_token(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        self.tokens >= 1.0
    }

    fn spend(&mut self) {
        self.tokens -= 1.0;
    }
}

/// The per-user buckets of this node's live users.
#[derive(Debug)]
pub(crate) struct Budgets {
    by_user: DashMap<UserId, Arc<Mutex<Bucket>>>,
    per_user_per_second: u32,
}

impl Budgets {
    pub(crate) fn new(per_user_per_second: u32) -> Arc<Self> {
        Arc::new(Self { by_user: DashMap::new(), per_user_per_second })
    }

    /// A connection's budget: its own bucket, and its user's shared one.
    pub(crate) fn connection(self: &Arc<Self>, user_id: UserId, per_connection_per_second: u32) -> Budget {
        let shared = self
            .by_user
            .entry(user_id)
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(self.per_user_per_second))))
            .clone();
        Budget { own: Bucket::new(per_connection_per_second), shared, budgets: self.clone(), user_id }
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.by_user.len()
    }
}

/// One connection's claim on its budgets; the user's bucket goes when the
/// user's last connection here does.
#[derive(Debug)]
pub(crate) struct Budget {
    own: Bucket,
    shared: Arc<Mutex<Bucket>>,
    budgets: Arc<Budgets>,
    user_id: UserId,
}

impl Budget {
    /// Takes a token from both buckets, or from neither.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if self.own.has_token(now) && shared.has_token(now) {
            self.own.spend();
            shared.spend();
            true
        } else {
            false
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        // The map's reference and this one: nobody else holds the bucket.
        // Under the shard lock, so a connection arriving now either already
        // holds a clone (and the entry stays) or makes a new bucket after.
        self.budgets
            .by_user
            .remove_if(&self.user_id, |_, shared| Arc::ptr_eq(shared, &self.shared) && Arc::strong_count(shared) == 2);
    }
}

#[cfg(test)]
mod tests {
    use super::Budgets;

    #[tokio::test(start_paused = true)]
    async fn a_users_connections_share_one_budget_and_it_refills() {
        let budgets = Budgets::new(5);
        let (mut phone, mut laptop) = (budgets.connection(1, 100), budgets.connection(1, 100));
        // Two seconds' worth of the user's rate, whichever socket asks.
        let taken = (0..20).filter(|n| if n % 2 == 0 { phone.take() } else { laptop.take() }).count();
        assert_eq!(taken, 10);
        // Another user has a budget of their own.
        let mut other = budgets.connection(2, 100);
        assert!(other.take());
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert_eq!((0..20).filter(|_| laptop.take()).count(), 5, "a second refills a second's worth");
        // A connection's own bucket still binds it alone.
        let mut narrow = budgets.connection(3, 1);
        assert_eq!((0..5).filter(|_| narrow.take()).count(), 2);
        drop((phone, laptop, other, narrow));
        assert_eq!(budgets.users(), 0, "no bucket outlives its user's connections");
    }
}
