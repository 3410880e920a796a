//! A named background thread that runs until it is told to stop: the
//! checkpointer's and the search indexer's.

use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::StoreError;

pub(crate) struct StoppableThread {
    /// Dropping (or sending on) it tells the thread to stop.
    stop: Mutex<Option<mpsc::SyncSender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for StoppableThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoppableThread").finish_non_exhaustive()
    }
}

impl StoppableThread {
    /// Runs `body` on a thread named `name`. `body` waits on the receiver
    /// it is given (`recv_timeout`) between its steps and ends once that
    /// answers anything but a timeout.
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(mpsc::Receiver<()>) + Send + 'static,
    ) -> Result<Self, StoreError> {
        // One message ever: the stop.
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || body(stopped))?;
        Ok(Self { stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) })
    }

    /// Tells the thread to stop and waits until it has.
    pub(crate) fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
