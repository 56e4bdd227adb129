//! Conversation memory for `previous_response_id` on upstreams that only speak
//! Chat Completions: a translated response id maps to the chat messages of the
//! whole conversation up to and including the assistant's reply.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub type History = Arc<Vec<Value>>;

pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, History>,
    /// Insertion order, so the oldest entry is evicted first.
    order: VecDeque<String>,
}

impl ResponseStore {
    pub fn new(capacity: usize) -> Self {
        ResponseStore {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn get(&self, response_id: &str) -> Option<History> {
        self.lock().by_id.get(response_id).cloned()
    }

    pub fn insert(&self, response_id: String, history: Vec<Value>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries
            .by_id
            .insert(response_id.clone(), Arc::new(history))
            .is_none()
        {
            entries.order.push_back(response_id);
        }
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.by_id.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map stays consistent even if a holder panicked mid-way (every
        // mutation is a single insert/remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evicts_the_oldest_entry_beyond_capacity() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), vec![json!(1)]);
        store.insert("b".into(), vec![json!(2)]);
        store.insert("c".into(), vec![json!(3)]);
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.get("c").unwrap().as_slice(), &[json!(3)]);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let store = ResponseStore::new(0);
        store.insert("a".into(), vec![]);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn reinserting_an_id_does_not_duplicate_its_slot() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), vec![json!(1)]);
        store.insert("a".into(), vec![json!(2)]);
        store.insert("b".into(), vec![]);
        assert_eq!(store.get("a").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.len(), 2);
    }
}
