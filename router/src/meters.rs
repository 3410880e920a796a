//! Counters with one label, for the paths that count every event.
//! `metrics::counter!` looks its metric up in the recorder's registry on
//! every call (the name and labels hashed, a lock taken, a key built and
//! allocated); a [`Family`] does that once per label value and then only
//! counts. A server installs its recorder before it serves, so the handles
//! taken on first use are the recorder's.

use std::sync::RwLock;

use metrics::Counter;

/// A counter with one label whose values are static strings (command and
/// event kinds): each value's handle is registered on its first count.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    label: &'static str,
    handles: RwLock<Vec<(&'static str, Counter)>>,
}

impl Family {
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        Self { name, label, handles: RwLock::new(Vec::new()) }
    }

    /// Adds `by` to the counter labelled `value`.
    pub fn increment(&self, value: &'static str, by: u64) {
        if let Ok(handles) = self.handles.read()
            && let Some((_, counter)) = handles.iter().find(|(known, _)| *known == value)
        {
            counter.increment(by);
            return;
        }
        let counter = metrics::counter!(self.name, self.label => value);
        counter.increment(by);
        if let Ok(mut handles) = self.handles.write()
            && !handles.iter().any(|(known, _)| *known == value)
        {
            handles.push((value, counter));
        }
    }
}
