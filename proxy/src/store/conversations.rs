//! Conversation memory for upstreams that only speak Chat Completions: a
//! translated response id maps to the chat messages of the whole
//! conversation up to and including the assistant's turn (for
//! `previous_response_id`), to the response object and its input items (for
//! `responses.retrieve` and `input_items.list`), and the output items of the
//! response are found by their own ids (for `item_reference` input items).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub type History = Arc<Vec<Value>>;

pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

/// One translated response as the proxy keeps it.
pub struct Kept {
    /// The chat messages up to and including the assistant's turn.
    pub history: Vec<Value>,
    /// The response object as the client got it.
    pub response: Value,
    /// The request's input items, each with an `id`, in the order sent.
    pub input_items: Vec<Value>,
}

struct Stored {
    history: History,
    response: Arc<Value>,
    input_items: Arc<Vec<Value>>,
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

    pub fn contains(&self, response_id: &str) -> bool {
        self.lock().by_id.contains_key(response_id)
    }

    /// The response object, as `responses.retrieve` returns it.
    pub fn response(&self, response_id: &str) -> Option<Arc<Value>> {
        self.lock()
            .by_id
            .get(response_id)
            .map(|stored| stored.response.clone())
    }

    /// The request's input items, in the order they were sent.
    pub fn input_items(&self, response_id: &str) -> Option<Arc<Vec<Value>>> {
        self.lock()
            .by_id
            .get(response_id)
            .map(|stored| stored.input_items.clone())
    }

    /// Forgets a response and its items; false if it was not held.
    pub fn remove(&self, response_id: &str) -> bool {
        let mut entries = self.lock();
        let Some(stored) = entries.by_id.remove(response_id) else {
            return false;
        };
        entries.forget_items(response_id, &stored);
        entries.order.retain(|id| id != response_id);
        true
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

    /// Keeps a response: the conversation up to and including its turn, the
    /// response itself, its input items, and its output items by id.
    pub fn insert(&self, response_id: String, kept: Kept) {
        if self.capacity == 0 {
            return;
        }
        let output = kept
            .response
            .get("output")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
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
            history: Arc::new(kept.history),
            response: Arc::new(kept.response),
            input_items: Arc::new(kept.input_items),
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

    fn kept(history: Vec<Value>, output: Vec<Value>) -> Kept {
        Kept {
            history,
            response: json!({"object": "response", "output": output}),
            input_items: vec![],
        }
    }

    #[test]
    fn evicts_the_oldest_entry_beyond_capacity() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), kept(vec![json!(1)], vec![]));
        store.insert("b".into(), kept(vec![json!(2)], vec![]));
        store.insert("c".into(), kept(vec![json!(3)], vec![]));
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.get("c").unwrap().as_slice(), &[json!(3)]);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let store = ResponseStore::new(0);
        store.insert("a".into(), kept(vec![], vec![item("fc_1")]));
        assert_eq!(store.len(), 0);
        assert!(store.item("fc_1").is_none());
    }

    #[test]
    fn reinserting_an_id_does_not_duplicate_its_slot() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), kept(vec![json!(1)], vec![item("fc_old")]));
        store.insert("a".into(), kept(vec![json!(2)], vec![item("fc_new")]));
        store.insert("b".into(), kept(vec![], vec![]));
        assert_eq!(store.get("a").unwrap().as_slice(), &[json!(2)]);
        assert_eq!(store.len(), 2);
        assert!(store.item("fc_old").is_none());
        assert_eq!(store.item("fc_new"), Some(item("fc_new")));
        assert_eq!(store.indexed_items(), 1);
    }

    #[test]
    fn a_removed_response_takes_its_items_and_its_slot() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), kept(vec![json!(1)], vec![item("fc_1")]));
        assert!(store.contains("a"));
        assert!(store.remove("a"));
        assert!(!store.remove("a"), "a second remove finds nothing");
        assert!(store.response("a").is_none() && store.input_items("a").is_none());
        assert!(store.item("fc_1").is_none());
        store.insert("b".into(), kept(vec![], vec![]));
        store.insert("c".into(), kept(vec![], vec![]));
        assert!(
            store.contains("b"),
            "the removed entry's slot is free again"
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn output_items_are_found_by_id_and_evicted_with_their_response() {
        let store = ResponseStore::new(1);
        store.insert("a".into(), kept(vec![], vec![item("msg_1"), item("fc_1")]));
        assert_eq!(store.item("fc_1"), Some(item("fc_1")));
        assert_eq!(store.item("msg_1"), Some(item("msg_1")));
        assert!(store.item("fc_2").is_none());
        store.insert("b".into(), kept(vec![], vec![item("fc_2")]));
        assert!(store.item("msg_1").is_none());
        assert!(store.item("fc_1").is_none());
        assert_eq!(store.item("fc_2"), Some(item("fc_2")));
        assert_eq!(store.indexed_items(), 1);
    }

    #[test]
    fn an_evicted_response_leaves_an_item_id_a_newer_one_reused() {
        let store = ResponseStore::new(2);
        store.insert("a".into(), kept(vec![], vec![item("fc_1")]));
        store.insert("b".into(), kept(vec![], vec![item("fc_1")]));
        store.insert("c".into(), kept(vec![], vec![]));
        assert_eq!(store.item("fc_1"), Some(item("fc_1")));
        store.insert("d".into(), kept(vec![], vec![]));
        assert!(store.item("fc_1").is_none());
        assert_eq!(store.indexed_items(), 0);
    }
}
