//! Conversation memory for upstreams that only speak Chat Completions: a
//! translated response id maps to the chat messages of the whole
//! conversation up to and including the assistant's turn (for
//! `previous_response_id`), and the output items of the response are found
//! by their own ids (for `item_reference` input items).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub type History = Arc<Vec<Value>>;

pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

struct Stored {
    history: History,
    /// The response's output items, each with its `id`.
    output: Vec<Value>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, Stored>,
    /// Output item id -> the response that produced it. An item lives as long
    /// as its response, so this index is bounded by the capacity too.
    items: HashMap<String, String>,
    /// Insertion order, so the oldest entry is evicted first.
    order: VecDeque<String>,
}

impl Entries {
    fn forget_items(&mut self, response_id: &str, stored: &Stored) {
        for id in item_ids(&stored.output) {
            // Another response may hold the id by now; its entry stays.
            if self.items.get(id).map(String::as_str) == Some(response_id) {
                self.items.remove(id);
            }
        }
    }
}

fn item_ids(output: &[Value]) -> impl Iterator<Item = &str> {
    output
        .iter()
        .filter_map(|item| item.get("id").and_then(Value::as_str))
}

impl ResponseStore {
    pub fn new(capacity: usize) -> Self {
        ResponseStore {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn get(&self, response_id: &str) -> Option<History> {
        self.lock()
            .by_id
            .get(response_id)
            .map(|stored| stored.history.clone())
    }

    /// An output item of a stored response, by the item's id.
    pub fn item(&self, item_id: &str) -> Option<Value> {
        let entries = self.lock();
        let response_id = entries.items.get(item_id)?;
        entries
            .by_id
            .get(response_id)?
            .output
            .iter()
            .find(|item| item.get("id").and_then(Value::as_str) == Some(item_id))
            .cloned()
    }

    /// Keeps a response: the conversation up to and including its turn, and
    /// its output items.
    pub fn insert(&self, response_id: String, history: Vec<Value>, output: Vec<Value>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        match entries.by_id.remove(&response_id) {
            // A replaced entry's items go with it.
            Some(previous) => entries.forget_items(&response_id, &previous),
            None => entries.order.push_back(response_id.clone()),
        }
        for id in item_ids(&output) {
            entries.items.insert(id.to_owned(), response_id.clone());
        }
        let stored = Stored {
            history: Arc::new(history),
            output,
        };
        entries.by_id.insert(response_id, stored);
        while entries.order.len() > self.capacity {
            if let Some(oldest) = entries.order.pop_front()
                && let Some(stored) = entries.by_id.remove(&oldest)
            {
                entries.forget_items(&oldest, &stored);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    #[cfg(test)]
    fn indexed_items(&self) -> usize {
        self.lock().items.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The maps stay consistent even if a holder panicked mid-way (no
        // mutation can panic), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str) -> Value {
        json!({"type": "function_call", "id": id, "call_id": "call", "name": "f", "arguments": "{}"})
    }

    #[test]
    fn evicts_the_oldest_entry_beyond_capacity() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), vec![json!(1)], vec![]);
        store.insert("b".into(), vec![json!(2)], vec![]);
        store.insert("c".into(), vec![json!(3)], vec![]);
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.get("c").unwrap().as_slice(), &[json!(3)]);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let store = ResponseStore::new(0);
        store.insert("a".into(), vec![], vec![item("fc_1")]);
        assert_eq!(store.len(), 0);
        assert!(store.item("fc_1").is_none());
    }

    #[test]
    fn reinserting_an_id_does_not_duplicate_its_slot() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), vec![json!(1)], vec![item("fc_old")]);
        store.insert("a".into(), vec![json!(2)], vec![item("fc_new")]);
        store.insert("b".into(), vec![], vec![]);
        assert_eq!(store.get("a").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.len(), 2);
        assert!(store.item("fc_old").is_none());
        assert_eq!(store.item("fc_new"), Some(item("fc_new")));
        assert_eq!(store.indexed_items(), 1);
    }

    #[test]
    fn output_items_are_found_by_id_and_evicted_with_their_response() {
        let store = ResponseStore::new(1);
        store.insert("a".into(), vec![], vec![item("msg_1"), item("fc_1")]);
        assert_eq!(store.item("fc_1"), Some(item("fc_1")));
        assert_eq!(store.item("msg_1"), Some(item("msg_1")));
        assert!(store.item("fc_2").is_none());
        store.insert("b".into(), vec![], vec![item("fc_2")]);
        assert!(store.item("msg_1").is_none());
        assert!(store.item("fc_1").is_none());
        assert_eq!(store.item("fc_2"), Some(item("fc_2")));
        assert_eq!(store.indexed_items(), 1);
    }

    #[test]
    fn an_evicted_response_leaves_an_item_id_a_newer_one_reused() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), vec![], vec![item("fc_1")]);
        store.insert("b".into(), vec![], vec![item("fc_1")]);
        store.insert("c".into(), vec![], vec![]);
        assert_eq!(store.item("fc_1"), Some(item("fc_1")));
        store.insert("d".into(), vec![], vec![]);
        assert!(store.item("fc_1").is_none());
        assert_eq!(store.indexed_items(), 0);
    }
}
