//! Whose the communications in progress are: the service and the account
//! of each one this host authorized and that has not ended here. A completion
//! needs both before its write (the account's turn, and whether the
//! caller may act for the service); knowing them here spares it a read
//! transaction and a trip to a worker thread. Only a shortcut: a
//! communication not found here (authorized by another host or before a
//! restart, or while the map was full) is read from the store, and the
//! completion's own write reads the communication again in any case.

use std::collections::HashMap;
use std::sync::Mutex;

/// Communications remembered at most, about 150-400 bytes each (three
/// strings and the map's own). Some are never removed: offers nobody
/// answers, communications never completed, and those completed through
/// another host sharing the database; so a full map is emptied and starts
/// again (what it forgot is read from the store).
const KEPT: usize = 65_536;

/// A communication's service and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub service: String,
    pub account: String,
}

#[derive(Default)]
pub(super) struct Owners {
    map: Mutex<HashMap<String, Owner>>,
}

impl Owners {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a communication just recorded.
    pub(super) fn insert(&self, id: &str, owner: Owner) {
        let mut map = self.map();
        if map.len() >= KEPT {
            map.clear();
        }
        map.insert(id.to_owned(), owner);
    }

    pub(super) fn get(&self, id: &str) -> Option<Owner> {
        self.map().get(id).cloned()
    }

    /// Forgets a communication that ended (or may have).
    pub(super) fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: usize) -> Owner {
        Owner {
            service: "calling".into(),
            account: format!("a-{n}"),
        }
    }

    #[test]
    fn remembers_until_removed_and_never_past_its_bound() {
        let owners = Owners::default();
        owners.insert("c-1", owner(1));
        assert_eq!(owners.get("c-1"), Some(owner(1)));
        owners.remove("c-1");
        assert_eq!(owners.get("c-1"), None);
        for n in 0..KEPT {
            owners.insert(&format!("c-{n}"), owner(n));
        }
        assert_eq!(owners.len(), KEPT);
        // Full: the next one starts the map again, and is remembered.
        owners.insert("c-next", owner(0));
        assert_eq!(owners.len(), 1);
        assert_eq!(owners.get("c-next"), Some(owner(0)));
        assert_eq!(owners.get("c-0"), None, "what it held was forgotten");
    }
}
