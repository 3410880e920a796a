//! argon2id password hashes on dedicated threads, one per core, fed by a
//! bounded queue. A hash costs tens of milliseconds of CPU and 19 MiB of
//! memory: on the shared blocking pool a burst of logins would spread those
//! buffers over hundreds of threads whose allocator arenas keep them
//! (hundreds of MiB of RSS), and would compete with SQLite reads for CPU.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

/// Hashes waiting for a hashing thread. When full, callers wait (async):
/// a login storm queues rather than allocating.
const QUEUE_DEPTH: usize = 256;

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

/// Runs `work` on a hashing thread.
async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    // The queue is bounded; wait for room off the async threads.
    let jobs = POOL.jobs.clone();
    tokio::task::spawn_blocking(move || jobs.send(job)).await.ok()?.ok()?;
    result.await.ok()
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password`.
pub(crate) async fn hash(password: String) -> Result<String, String> {
    on_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).map_err(|e| e.to_string())
    })
    .await
    .ok_or_else(|| "password hashing unavailable".to_owned())?
}

/// Whether `password` matches the stored PHC string.
pub(crate) async fn verify(stored: String, password: String) -> bool {
    on_pool(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| hasher().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
}
