//! A connection's outbound queue. The fan-out queues a *run*: consecutive
//! events for the same recipients (a sender's burst of messages to one
//! chat), shared by every device that receives them, in one push. The
//! queue is bounded in frames, not runs: a connection with more than its
//! limit waiting is a slow consumer and is closed, whatever the runs'
//! sizes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::codec::SharedMessages;

/// Events queued together, each encoded at most once per wire format by
/// whichever of its receivers needs that format first.
pub(crate) type Run = Arc<[SharedMessages]>;

/// Why a run was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection already has its limit of frames waiting.
    Full,
    /// The connection is gone.
    Closed,
}

/// The sending side, held by the connection's [`crate::registry::Handle`].
#[derive(Debug)]
pub(crate) struct Outbound {
    runs: mpsc::Sender<Run>,
    /// Frames queued and not yet taken by the connection.
    waiting: Arc<AtomicUsize>,
    limit: usize,
}

/// The receiving side, read by the connection's task.
#[derive(Debug)]
pub(crate) struct Inbox {
    runs: mpsc::Receiver<Run>,
    waiting: Arc<AtomicUsize>,
}

/// A queue that holds at most `limit` frames (at least one).
pub(crate) fn queue(limit: usize) -> (Outbound, Inbox) {
    let limit = limit.max(1);
    // Every run holds at least one frame, so the channel never fills
    // before the frame count does.
    let (sender, receiver) = mpsc::channel(limit);
    let waiting = Arc::new(AtomicUsize::new(0));
    (Outbound { runs: sender, waiting: waiting.clone(), limit }, Inbox { runs: receiver, waiting })
}

impl Outbound {
    /// Queues `run` without waiting.
    pub(crate) fn push(&self, run: &Run) -> Result<(), Refused> {
        let frames = run.len();
        let before = self.waiting.fetch_add(frames, Ordering::AcqRel);
        if before + frames > self.limit {
            self.waiting.fetch_sub(frames, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        match self.runs.try_send(run.clone()) {
            Ok(()) => Ok(()),
            Err(refused) => {
                self.waiting.fetch_sub(frames, Ordering::AcqRel);
                Err(match refused {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Closed(_) => Refused::Closed,
                })
            }
        }
    }
}

impl Inbox {
    /// The next run, once there is one; `None` when no sender is left.
    pub(crate) async fn recv(&mut self) -> Option<Run> {
        let run = self.runs.recv().await?;
        self.waiting.fetch_sub(run.len(), Ordering::AcqRel);
        Some(run)
    }

    /// The next run if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Run> {
        let run = self.runs.try_recv().ok()?;
        self.waiting.fetch_sub(run.len(), Ordering::AcqRel);
        Some(run)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use protocol::Frame;
    use protocol::ServerEvent;
    use protocol::server::Pong;

    use super::{Refused, Run, queue};
    use crate::codec::SharedMessages;

    fn run(frames: usize) -> Run {
        let frame = Frame::new(ServerEvent::Pong(Pong { timestamp: "t".into() }));
        (0..frames).map(|_| SharedMessages::queued(frame.clone(), std::time::Instant::now())).collect::<Vec<_>>().into()
    }

    #[tokio::test]
    async fn the_limit_counts_frames_not_runs() {
        let (outbound, mut inbox) = queue(5);
        assert_eq!(outbound.push(&run(3)), Ok(()));
        assert_eq!(outbound.push(&run(3)), Err(Refused::Full), "6 frames would wait");
        assert_eq!(outbound.push(&run(2)), Ok(()));
        assert_eq!(outbound.push(&run(1)), Err(Refused::Full));

        // What the connection takes frees its frames.
        assert_eq!(inbox.recv().await.map(|run| run.len()), Some(3));
        assert_eq!(outbound.push(&run(3)), Ok(()));
        assert_eq!(inbox.try_recv().map(|run| run.len()), Some(2));
        assert_eq!(inbox.try_recv().map(|run| run.len()), Some(3));
        assert!(inbox.try_recv().is_none() && inbox.is_empty());

        drop(inbox);
        assert_eq!(outbound.push(&run(1)), Err(Refused::Closed));
        assert_eq!(Arc::strong_count(&outbound.waiting), 1);
        assert_eq!(outbound.waiting.load(std::sync::atomic::Ordering::Acquire), 0, "a refused run is not counted");
    }
}
