//! The devices each user has logged in from, so a login can say
//! `is_new_device` (seed 000). Kept in memory: a restart forgets them, and
//! the first login after it reads as a new device.

use std::collections::HashSet;

use dashmap::DashMap;

/// Devices remembered per user at most; past it, the oldest is not
/// tracked apart from the others (the set is cleared and starts again).
const DEVICES_PER_USER: usize = 32;

/// Devices seen per user. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownDevices {
    /// The lock of one user's set is held only to insert into it.
    seen: std::sync::Arc<DashMap<i64, HashSet<String>>>,
}

impl KnownDevices {
    /// Records `device` for `user`; answers whether it was new to them.
    pub(crate) fn remember(&self, user: i64, device: &str) -> bool {
        let device: String = device.chars().take(128).collect();
        let mut devices = self.seen.entry(user).or_default();
        if devices.len() >= DEVICES_PER_USER && !devices.contains(&device) {
            devices.clear();
        }
        devices.insert(device)
    }
}

#[cfg(test)]
mod tests {
    use super::KnownDevices;

    #[test]
    fn a_device_is_new_once_per_user() {
        let devices = KnownDevices::default();
        assert!(devices.remember(1, "phone"));
        assert!(!devices.remember(1, "phone"));
        assert!(devices.remember(2, "phone"), "another user's device is theirs");
    }
}
