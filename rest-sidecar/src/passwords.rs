//! argon2id password hashes on dedicated threads, one per core, fed by a
//! bounded queue. A hash costs tens of milliseconds of CPU and 19 MiB of
//! memory: on the shared blocking pool a burst of logins would spread those
//! buffers over hundreds of threads whose allocator arenas keep them
//! (hundreds of MiB of RSS), and would compete with SQLite reads for CPU.
//! When the queue is full a request is answered at once (503 with
//! `Retry-After`), never parked on a blocking thread.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

/// Hashes waiting for a hashing thread. When full, new ones are refused
/// with [`HashError::Busy`]: a login storm is turned away, not parked.
const QUEUE_DEPTH: usize = 256;

/// Why a hash was not computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// Every hashing thread is busy and the queue is full.
    #[error("password checks are busy; retry shortly")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<HashError> for crate::ApiFailure {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => {
                metrics::counter!("switchboard_password_queue_full_total").increment(1);
                Self { retry_after: Some(1), ..Self::new(protocol::ErrorCode::Unavailable, error.to_string()) }
            }
            HashError::Failed(_) => {
                tracing::error!(%error, "password hashing failed");
                Self::new(protocol::ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// A well-formed hash no password matches: checked for unknown accounts,
/// so they take as long as known ones.
pub(crate) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: SyncSender<Job>,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (jobs, receiver) = sync_channel::<Job>(QUEUE_DEPTH);
    // Shared by the workers; each holds the lock only to take one job.
    let receiver: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(receiver));
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    for n in 0..threads {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new().name(format!("password-hash-{n}")).spawn(move || {
            loop {
                let job = match receiver.lock() {
                    Ok(receiver) => receiver.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a password hashing thread");
        }
    }
    Pool { jobs }
});

/// Runs `work` on a hashing thread, or refuses at once when the queue is full.
async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    POOL.jobs.try_send(job).map_err(|error| match error {
        TrySendError::Full(_) => HashError::Busy,
        TrySendError::Disconnected(_) => HashError::Failed("no hashing thread runs".into()),
    })?;
    result.await.map_err(|_| HashError::Failed("a hashing thread stopped".into()))
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password`.
pub(crate) async fn hash(password: String) -> Result<String, HashError> {
    on_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
    })
    .await?
    .map_err(|error| HashError::Failed(error.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub(crate) async fn verify(stored: String, password: String) -> Result<bool, HashError> {
    on_pool(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| hasher().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_verify_and_the_dummy_matches_nothing() {
        let stored = super::hash("password123".into()).await.unwrap();
        assert!(super::verify(stored.clone(), "password123".into()).await.unwrap());
        assert!(!super::verify(stored, "password124".into()).await.unwrap());
        assert!(argon2::PasswordHash::new(super::DUMMY_HASH).is_ok(), "well formed, so it costs a real check");
        assert!(!super::verify(super::DUMMY_HASH.to_owned(), "password123".into()).await.unwrap());
    }
}
