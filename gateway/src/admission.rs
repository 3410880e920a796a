//! Who may open a WebSocket besides the node-wide connection limit: at
//! most so many connections per client address, and at most so many still
//! to authenticate, so that neither one address nor a crowd of silent
//! sockets can take the node's connections.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Live WebSocket connections per client address.
pub(crate) struct Addresses {
    counts: DashMap<IpAddr, usize>,
    max: usize,
}

/// One connection's place in its address's count, given back when dropped.
pub(crate) struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Addresses {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { counts: DashMap::new(), max })
    }

    /// A slot for one more connection from `ip`, unless it has `max` already.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut count = self.counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { addresses: self.clone(), ip })
    }

    /// How many connections `ip` holds.
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> usize {
        self.counts.get(&ip).map_or(0, |count| *count)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        // The last connection of an address takes its entry with it.
        self.addresses.counts.remove_if_mut(&self.ip, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Addresses;

    #[test]
    fn an_address_gets_max_slots_and_each_comes_back() {
        let addresses = Addresses::new(2);
        let ip = "192.0.2.1".parse().unwrap();
        let (first, second) = (addresses.take(ip).unwrap(), addresses.take(ip).unwrap());
        assert!(addresses.take(ip).is_none(), "a third is refused");
        assert!(addresses.take("192.0.2.2".parse().unwrap()).is_some(), "another address is not");
        drop(first);
        let third = addresses.take(ip).expect("a slot came back");
        drop((second, third));
        assert_eq!(addresses.held(ip), 0);
        assert!(addresses.counts.is_empty(), "no entry outlives its connections");
    }
}
