//! Conversation memory for upstreams that only speak Chat Completions: a
//! translated response id maps to the chat messages of the whole
//! conversation up to and including the assistant's turn (for
//! `previous_response_id`), to the response object and its input items (for
//! `responses.retrieve` and `input_items.list`), and the output items of the
//! response are found by their own ids (for `item_reference` input items).
//!
//! A conversation is not copied per turn: each response keeps only the
//! messages its turn added (a [`Segment`]), linked to the segment of the
//! response it continued, so an N-turn chain holds N turns, not N²/2. A
//! parent's segment is shared, so evicting the parent never breaks a child:
//! its messages live (and count against the byte budget) as long as any kept
//! response continues them.
//!
//! The store is bounded twice: at most `capacity` responses, and at most
//! `byte_budget` bytes (the serialized JSON size of what it holds: every live
//! segment, each response object and its input items). Beyond either, the
//! oldest responses go first; one larger than the whole budget is not kept
//! (and evicts nothing).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

/// The chat messages of a conversation, oldest first.
pub type History = Vec<Value>;

/// The default `[server] response_store_bytes`.
pub const DEFAULT_BYTE_BUDGET: usize = 64 * 1024 * 1024;

pub struct ResponseStore {
    capacity: usize,
    byte_budget: usize,
    inner: Mutex<Entries>,
}

/// One translated response as the proxy keeps it.
pub struct Kept {
    /// The response this turn continued (`previous_response_id`), if any.
    pub parent: Option<String>,
    /// The chat messages up to and including the assistant's turn.
    pub history: Vec<Value>,
    /// The response object as the client got it.
    pub response: Value,
    /// The request's input items, each with an `id`, in the order sent.
    pub input_items: Vec<Value>,
}

/// The messages one turn added to its conversation.
struct Segment {
    turn: Vec<Value>,
    bytes: usize,
    parent: Option<Arc<Segment>>,
}

impl Drop for Segment {
    /// Unlinks a chain iteratively: dropping a long conversation's last
    /// segment must not recurse once per turn.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(segment) = next {
            next = match Arc::try_unwrap(segment) {
                Ok(mut only) => only.parent.take(),
                Err(_shared) => None,
            };
        }
    }
}

/// The segments of a conversation, its first turn first.
fn chain(last: &Arc<Segment>) -> Vec<&Segment> {
    let mut segments = Vec::new();
    let mut next = Some(last.as_ref());
    while let Some(segment) = next {
        segments.push(segment);
        next = segment.parent.as_deref();
    }
    segments.reverse();
    segments
}

fn history_of(last: &Arc<Segment>) -> History {
    chain(last)
        .into_iter()
        .flat_map(|segment| segment.turn.iter().cloned())
        .collect()
}

/// Whether `history` begins with the conversation ending at `last`.
fn continues(history: &[Value], last: &Arc<Segment>) -> bool {
    let mut rest = history;
    for segment in chain(last) {
        let Some((head, tail)) = rest.split_at_checked(segment.turn.len()) else {
            return false;
        };
        if head != segment.turn.as_slice() {
            return false;
        }
        rest = tail;
    }
    true
}

struct Stored {
    segment: Arc<Segment>,
    response: Arc<Value>,
    input_items: Arc<Vec<Value>>,
    /// What the response object and its input items count against the budget.
    bytes: usize,
}

impl Stored {
    /// The response's output items, each with its `id`.
    fn output(&self) -> &[Value] {
        self.response
            .get("output")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, Stored>,
    /// Output item id -> the response that produced it. An item lives as long
    /// as its response, so this index is bounded by the capacity too.
    items: HashMap<String, String>,
    /// Insertion order, so the oldest entry is evicted first.
    order: VecDeque<String>,
    /// What everything held counts against the budget.
    bytes: usize,
}

impl Entries {
    fn forget_items(&mut self, response_id: &str, stored: &Stored) {
        for id in item_ids(stored.output()) {
            // Another response may hold the id by now; its entry stays.
            if self.items.get(id).map(String::as_str) == Some(response_id) {
                self.items.remove(id);
            }
        }
    }

    /// Lets go of a removed entry: its items, its bytes, and each segment of
    /// its conversation that no other kept response continues.
    fn release(&mut self, response_id: &str, stored: Stored) {
        self.forget_items(response_id, &stored);
        self.uncount(stored.bytes);
        let mut next = Some(stored.segment);
        while let Some(segment) = next {
            next = match Arc::try_unwrap(segment) {
                Ok(mut only) => {
                    self.uncount(only.bytes);
                    only.parent.take()
                }
                Err(_shared) => None,
            };
        }
    }
}

impl Entries {
    fn uncount(&mut self, bytes: usize) {
        debug_assert!(bytes <= self.bytes, "the byte count is exact");
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

fn item_ids(output: &[Value]) -> impl Iterator<Item = &str> {
    output
        .iter()
        .filter_map(|item| item.get("id").and_then(Value::as_str))
}

/// The size of `value` as compact JSON, counted without building the text.
fn json_bytes(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl ResponseStore {
    /// A store of at most `capacity` responses within the default byte budget.
    pub fn new(capacity: usize) -> Self {
        ResponseStore::with_budget(capacity, DEFAULT_BYTE_BUDGET)
    }

    pub fn with_budget(capacity: usize, byte_budget: usize) -> Self {
        ResponseStore {
            capacity,
            byte_budget,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn get(&self, response_id: &str) -> Option<History> {
        self.lock()
            .by_id
            .get(response_id)
            .map(|stored| history_of(&stored.segment))
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
        entries.release(response_id, stored);
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
            .output()
            .iter()
            .find(|item| item.get("id").and_then(Value::as_str) == Some(item_id))
            .cloned()
    }

    /// Keeps a response: the conversation up to and including its turn (only
    /// the turn itself when it continues a kept response, linked to it), the
    /// response itself, its input items, and its output items by id.
    pub fn insert(&self, response_id: String, kept: Kept) {
        if self.capacity == 0 {
            return;
        }
        let Kept {
            parent,
            mut history,
            response,
            input_items,
        } = kept;
        let mut entries = self.lock();
        // The parent as kept now: should it be gone, or not be what this turn
        // continued, the turn keeps its whole conversation itself.
        let parent = parent
            .and_then(|id| entries.by_id.get(&id))
            .map(|stored| stored.segment.clone())
            .filter(|segment| continues(&history, segment));
        let own = parent.as_ref().map_or(0, |segment| {
            chain(segment).iter().map(|s| s.turn.len()).sum::<usize>()
        });
        let turn = history.split_off(own);
        let segment_bytes = json_bytes(&turn);
        let response_bytes = json_bytes(&response) + json_bytes(&input_items) + response_id.len();
        // One that could never fit is not kept, and evicts nothing.
        if segment_bytes + response_bytes > self.byte_budget {
            return;
        }
        let segment = Arc::new(Segment {
            turn,
            bytes: segment_bytes,
            parent,
        });
        let stored = Stored {
            segment,
            bytes: response_bytes,
            response: Arc::new(response),
            input_items: Arc::new(input_items),
        };
        match entries.by_id.remove(&response_id) {
            // A replaced entry's items go with it.
            Some(previous) => entries.release(&response_id, previous),
            None => entries.order.push_back(response_id.clone()),
        }
        for id in item_ids(stored.output()) {
            entries.items.insert(id.to_owned(), response_id.clone());
        }
        entries.bytes += segment_bytes + stored.bytes;
        entries.by_id.insert(response_id, stored);
        while entries.order.len() > self.capacity || entries.bytes > self.byte_budget {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(stored) = entries.by_id.remove(&oldest) {
                entries.release(&oldest, stored);
            }
        }
    }

    /// What everything held counts against the byte budget.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    #[cfg(test)]
    fn indexed_items(&self) -> usize {
        self.lock().items.len()
    }

    /// Chat messages actually held, each shared segment counted once.
    #[cfg(test)]
    fn stored_messages(&self) -> usize {
        let entries = self.lock();
        let mut seen = std::collections::HashSet::new();
        let mut messages = 0;
        for stored in entries.by_id.values() {
            for segment in chain(&stored.segment) {
                if seen.insert(std::ptr::from_ref(segment)) {
                    messages += segment.turn.len();
                }
            }
        }
        messages
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
            parent: None,
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

    fn user(n: usize) -> Value {
        json!({"role": "user", "content": format!("question {n}")})
    }

    fn assistant(n: usize) -> Value {
        json!({"role": "assistant", "content": format!("answer {n}")})
    }

    /// Turn `n` of a chain as the relay keeps it: the whole conversation so
    /// far, continuing turn `n - 1`.
    fn turn(n: usize) -> Kept {
        let history = (0..=n).flat_map(|i| [user(i), assistant(i)]).collect();
        Kept {
            parent: n.checked_sub(1).map(|p| format!("t{p}")),
            history,
            response: json!({"object": "response", "output": []}),
            input_items: vec![],
        }
    }

    #[test]
    fn the_default_budget_is_the_configs() {
        let server = crate::config::tables::ServerConfig::default();
        assert_eq!(DEFAULT_BYTE_BUDGET, server.response_store_bytes);
    }

    #[test]
    fn a_fifty_turn_chain_holds_each_turn_once() {
        let store = ResponseStore::new(100);
        for n in 0..50 {
            store.insert(format!("t{n}"), turn(n));
        }
        // Each turn adds two messages; copied whole per turn it would be 2550.
        assert_eq!(store.stored_messages(), 100);
        let last = store.get("t49").unwrap();
        assert_eq!(last.len(), 100);
        assert_eq!(last, turn(49).history);
        assert_eq!(store.get("t10").unwrap(), turn(10).history);
    }

    #[test]
    fn evicting_a_parent_leaves_its_children_whole() {
        let store = ResponseStore::new(2);
        for n in 0..5 {
            store.insert(format!("t{n}"), turn(n));
        }
        assert!(store.get("t2").is_none());
        assert_eq!(store.get("t4").unwrap(), turn(4).history);
        assert_eq!(store.get("t3").unwrap(), turn(3).history);
        assert_eq!(
            store.stored_messages(),
            10,
            "the evicted turns t4 continues stay"
        );
        // Continuing an evicted response is refused upstream of the store; a
        // turn whose parent is gone keeps its whole conversation itself.
        store.insert(
            "t5".into(),
            Kept {
                parent: Some("t0".into()),
                ..turn(5)
            },
        );
        assert_eq!(store.get("t5").unwrap(), turn(5).history);
    }

    #[test]
    fn a_turn_that_does_not_continue_its_parent_keeps_its_own_history() {
        let store = ResponseStore::new(10);
        store.insert("t0".into(), turn(0));
        let mut other = turn(1);
        other.history[0] = user(99);
        let expected = other.history.clone();
        store.insert("t1".into(), other);
        assert_eq!(store.get("t1").unwrap(), expected);
        assert_eq!(store.get("t0").unwrap(), turn(0).history);
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_first() {
        let big = |n: usize| kept(vec![json!("x".repeat(1000)), json!(n)], vec![]);
        let one = {
            let probe = ResponseStore::new(10);
            probe.insert("a".into(), big(0));
            probe.bytes()
        };
        assert!(one > 1000);
        let store = ResponseStore::with_budget(100, 3 * one);
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            store.insert(id.into(), big(n));
        }
        assert_eq!((store.len(), store.bytes()), (3, 3 * one));
        store.insert("d".into(), big(3));
        assert!(store.get("a").is_none(), "the oldest went first");
        assert!(["b", "c", "d"].iter().all(|id| store.contains(id)));
        assert_eq!((store.len(), store.bytes()), (3, 3 * one));
        // One larger than the whole budget is not kept, and evicts nothing.
        store.insert(
            "huge".into(),
            kept(vec![json!("y".repeat(4 * one))], vec![]),
        );
        assert!(!store.contains("huge"));
        assert!(["b", "c", "d"].iter().all(|id| store.contains(id)));
        assert_eq!(store.bytes(), 3 * one);
    }

    #[test]
    fn a_chain_counts_each_segment_once_and_frees_it_with_its_last_holder() {
        let store = ResponseStore::new(100);
        for n in 0..20 {
            store.insert(format!("t{n}"), turn(n));
        }
        let whole = store.bytes();
        let flat = ResponseStore::new(100);
        flat.insert(
            "t19".into(),
            Kept {
                parent: None,
                ..turn(19)
            },
        );
        // The chain costs its segments once plus twenty small response objects.
        let responses = whole - flat.bytes();
        assert!(
            responses < 20 * 64,
            "{responses} bytes beyond one flat copy"
        );
        for n in 0..19 {
            assert!(store.remove(&format!("t{n}")));
            assert_eq!(store.get("t19").unwrap(), turn(19).history);
        }
        assert!(store.remove("t19"));
        assert_eq!((store.bytes(), store.stored_messages()), (0, 0));
    }
}
