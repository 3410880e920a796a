//! Each chat's last seq, kept by the writer thread of a store that is the
//! only process on its file, so that an append does not look it up.
//!
//! Only the writer appends, messages are never deleted and a seq never
//! changes, so the last seq of a chat the writer has appended to is the
//! one it wrote last. What it writes inside a transaction counts at once
//! (the next append of the same batch follows it) and is taken back when
//! the job's savepoint or the transaction is rolled back: each change
//! keeps the value it replaced until its transaction has ended.
//!
//! The values live with the writer's thread (a thread-local), which is the
//! only one that appends; on any other thread, and on the writer of a
//! shared data dir, nothing is held and appends look their seq up.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::model::ChatId;

/// Most chats held. Past it, the values are dropped at the next commit
/// and gathered again (about 40 bytes a chat).
const MAX_CHATS: usize = 1 << 20;

thread_local! {
    static HELD: RefCell<Option<LastSeqs>> = const { RefCell::new(None) };
}

#[derive(Debug, Default)]
struct LastSeqs {
    seqs: HashMap<ChatId, u64>,
    /// What each change of the open transaction replaced, oldest first.
    undo: Vec<(ChatId, Option<u64>)>,
    /// Where the running job's changes begin in `undo`.
    job_start: usize,
}

impl LastSeqs {
    /// Takes back the changes from `undo[from..]`, newest first.
    fn undo_to(&mut self, from: usize) {
        for (chat, before) in self.undo.drain(from..).rev() {
            match before {
                Some(seq) => self.seqs.insert(chat, seq),
                None => self.seqs.remove(&chat),
            };
        }
    }
}

/// Makes the calling thread (the writer of a store alone on its file) keep
/// last seqs from now on.
pub(crate) fn hold() {
    HELD.with_borrow_mut(|held| *held = Some(LastSeqs::default()));
}

/// `chat`'s last seq, if this thread holds it.
pub(crate) fn get(chat: ChatId) -> Option<u64> {
    HELD.with_borrow(|held| held.as_ref()?.seqs.get(&chat).copied())
}

/// Records that `chat`'s message `seq` was written in the open transaction.
pub(crate) fn wrote(chat: ChatId, seq: u64) {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held {
            let before = held.seqs.insert(chat, seq);
            held.undo.push((chat, before));
        }
    });
}

/// Drops what is held of `chat`, for good: a rollback does not bring it
/// back either.
pub(crate) fn forget(chat: ChatId) {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held {
            held.seqs.remove(&chat);
            let earlier_jobs = held.undo[..held.job_start].iter().filter(|&&(changed, _)| changed == chat).count();
            held.undo.retain(|&(changed, _)| changed != chat);
            held.job_start -= earlier_jobs;
        }
    });
}

/// A job of the open transaction begins.
pub(crate) fn job_started() {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held {
            held.job_start = held.undo.len();
        }
    });
}

/// The running job ended: `kept` unless its changes were rolled back.
pub(crate) fn job_ended(kept: bool) {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held
            && !kept
        {
            held.undo_to(held.job_start);
        }
    });
}

/// The open transaction ended, `committed` or rolled back.
pub(crate) fn transaction_ended(committed: bool) {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held {
            if committed {
                held.undo.clear();
                if held.seqs.len() > MAX_CHATS {
                    held.seqs = HashMap::new();
                }
            } else {
                held.undo_to(0);
            }
            held.job_start = 0;
        }
    });
}

/// A transaction begins; one that ended unseen (no [`transaction_ended`])
/// leaves its changes unconfirmed, so everything held is dropped.
pub(crate) fn transaction_started() {
    HELD.with_borrow_mut(|held| {
        if let Some(held) = held
            && !held.undo.is_empty()
        {
            tracing::warn!(changes = held.undo.len(), "last seqs of a transaction that ended unseen; dropping them");
            *held = LastSeqs::default();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolled_back_jobs_and_transactions_take_their_seqs_back() {
        std::thread::spawn(|| {
            wrote(1, 1);
            assert_eq!(get(1), None, "a thread that does not hold keeps nothing");
            hold();
            transaction_started();
            job_started();
            wrote(1, 5);
            job_ended(true);
            job_started();
            wrote(1, 6);
            wrote(2, 1);
            job_ended(false);
            assert_eq!((get(1), get(2)), (Some(5), None), "a failed job's seqs are taken back");
            transaction_ended(true);
            transaction_started();
            job_started();
            wrote(1, 6);
            job_ended(true);
            assert_eq!(get(1), Some(6), "the open transaction's seq counts at once");
            transaction_ended(false);
            assert_eq!(get(1), Some(5), "a rolled back transaction's seqs are taken back");
            transaction_started();
            job_started();
            wrote(2, 3);
            wrote(1, 6);
            job_ended(true);
            job_started();
            forget(1);
            wrote(2, 4);
            job_ended(false);
            assert_eq!((get(1), get(2)), (None, Some(3)), "a forgotten chat stays forgotten");
            transaction_ended(false);
            assert_eq!((get(1), get(2)), (None, None), "nor does a rollback bring it back");
        })
        .join()
        .unwrap();
    }
}
