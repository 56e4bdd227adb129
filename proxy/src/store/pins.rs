//! Where each native response lives: a response id the proxy relayed from an
//! upstream that speaks the Responses API maps to that upstream, so a later
//! `previous_response_id`, `responses.retrieve`, `responses.delete` or
//! `input_items.list` goes back to the one server that knows the id. Bounded
//! like the conversation memory: the oldest pin goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct ResponsePins {
    capacity: usize,
    inner: Mutex<Pins>,
}

#[derive(Default)]
struct Pins {
    /// Response id -> the upstream's position in the config.
    by_id: HashMap<String, usize>,
    /// Insertion order, so the oldest pin is evicted first.
    order: VecDeque<String>,
}

impl ResponsePins {
    pub fn new(capacity: usize) -> Self {
        ResponsePins {
            capacity,
            inner: Mutex::new(Pins::default()),
        }
    }

    pub fn pin(&self, response_id: &str, upstream: usize) {
        if self.capacity == 0 || response_id.is_empty() {
            return;
        }
        let mut pins = self.lock();
        if pins
            .by_id
            .insert(response_id.to_owned(), upstream)
            .is_none()
        {
            pins.order.push_back(response_id.to_owned());
        }
        while pins.order.len() > self.capacity {
            if let Some(oldest) = pins.order.pop_front() {
                pins.by_id.remove(&oldest);
            }
        }
    }

    pub fn upstream(&self, response_id: &str) -> Option<usize> {
        self.lock().by_id.get(response_id).copied()
    }

    pub fn unpin(&self, response_id: &str) {
        let mut pins = self.lock();
        if pins.by_id.remove(response_id).is_some() {
            pins.order.retain(|id| id != response_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pins> {
        // Both maps change together and nothing in between can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pin_goes_first_and_a_repin_keeps_one_slot() {
        let pins = ResponsePins::new(2);
        pins.pin("a", 0);
        pins.pin("a", 1);
        pins.pin("b", 2);
        assert_eq!(pins.upstream("a"), Some(1));
        pins.pin("c", 3);
        assert_eq!(pins.upstream("a"), None);
        assert_eq!((pins.upstream("b"), pins.upstream("c")), (Some(2), Some(3)));
    }

    #[test]
    fn an_unpinned_id_frees_its_slot() {
        let pins = ResponsePins::new(2);
        pins.pin("a", 0);
        pins.pin("b", 0);
        pins.unpin("a");
        pins.pin("c", 1);
        assert_eq!(pins.upstream("a"), None);
        assert_eq!((pins.upstream("b"), pins.upstream("c")), (Some(0), Some(1)));
    }

    #[test]
    fn zero_capacity_and_empty_ids_pin_nothing() {
        let none = ResponsePins::new(0);
        none.pin("a", 0);
        assert_eq!(none.upstream("a"), None);
        let pins = ResponsePins::new(1);
        pins.pin("", 0);
        assert_eq!(pins.upstream(""), None);
    }
}
