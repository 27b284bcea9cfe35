//! The handle table a device keeps for one workload (its sockets, its open files): a handle is
//! an index, the lowest free one is given out first, and the table shrinks when its last
//! entries are freed. What bounds it is the device's own limit, checked before an insert.

/// Entries by handle.
pub struct Slots<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<T> FromIterator<T> for Slots<T> {
    /// Entries at handles 0, 1, … in order.
    fn from_iter<I: IntoIterator<Item = T>>(entries: I) -> Self {
        Self { slots: entries.into_iter().map(Some).collect() }
    }
}

impl<T> Slots<T> {
    /// Entries held now.
    pub fn count(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn get(&self, handle: u64) -> Option<&T> {
        self.slots.get(usize::try_from(handle).ok()?)?.as_ref()
    }

    /// Holds `entry` at the lowest free handle.
    pub fn insert(&mut self, entry: T) -> u64 {
        match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(entry);
                free as u64
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() as u64 - 1
            }
        }
    }

    /// Frees `handle`; its entry, if it had one.
    pub fn remove(&mut self, handle: u64) -> Option<T> {
        let entry = self.slots.get_mut(usize::try_from(handle).ok()?)?.take();
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_handle_is_given_out_and_the_table_shrinks() {
        let mut slots: Slots<&str> = ["a", "b"].into_iter().collect();
        assert_eq!((slots.insert("c"), slots.count()), (2, 3));
        assert_eq!(slots.remove(0), Some("a"));
        assert_eq!(slots.remove(0), None);
        assert_eq!(slots.insert("d"), 0, "the freed handle comes back first");
        assert_eq!((slots.get(1), slots.get(7), slots.get(u64::MAX)), (Some(&"b"), None, None));
        assert_eq!((slots.remove(2), slots.remove(1)), (Some("c"), Some("b")));
        assert_eq!((slots.slots.len(), slots.insert("e")), (1, 1), "shrunk to what is held");
    }
}
