//! What is sent when: the request kinds and their mix, and the open and closed
//! loop timetables.

use std::time::Duration;

use serde_json::{Value, json};

pub(crate) const CACHE_HEADER: &str = "x-switchyard-cache";
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";
pub(crate) const RESPONSES_PATH: &str = "/v1/responses";
/// What ends a complete stream: chat's last event, and the Responses API's.
pub(crate) const CHAT_DONE: &[u8] = b"[DONE]";
pub(crate) const RESPONSES_DONE: &[u8] = b"response.completed";

/// One kind of request of a `--mix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Whole,
    Stream,
    Responses,
    ResponsesStream,
    Repeat,
    RepeatStream,
}

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Whole,
        Kind::Stream,
        Kind::Responses,
        Kind::ResponsesStream,
        Kind::Repeat,
        Kind::RepeatStream,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Whole => "whole",
            Kind::Stream => "stream",
            Kind::Responses => "responses",
            Kind::ResponsesStream => "responses_stream",
            Kind::Repeat => "repeat",
            Kind::RepeatStream => "repeat_stream",
        }
    }

    pub(crate) fn stream(self) -> bool {
        matches!(
            self,
            Kind::Stream | Kind::ResponsesStream | Kind::RepeatStream
        )
    }

    pub(crate) fn responses(self) -> bool {
        matches!(self, Kind::Responses | Kind::ResponsesStream)
    }

    pub(crate) fn repeated(self) -> bool {
        matches!(self, Kind::Repeat | Kind::RepeatStream)
    }

    /// The request body of the `seq`-th request (of this kind or not): a text of its own, or
    /// for the repeat kinds one of `pool` texts.
    pub(crate) fn body(self, model: &str, seq: u64, pool: u64) -> Value {
        let text = if self.repeated() {
            format!(
                "Repeated question {}: how much time does a proxy add?",
                seq % pool.max(1)
            )
        } else {
            format!("Request {seq}: how much time does a proxy add to a request?")
        };
        let mut body = if self.responses() {
            json!({
                "model": model,
                "instructions": "You are a helpful assistant.",
                "input": text,
                "max_output_tokens": 64,
            })
        } else {
            json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": text},
                ],
                "max_tokens": 64,
            })
        };
        if self.stream() {
            body["stream"] = json!(true);
        }
        body
    }
}

/// The kinds of a `--mix`, with their weights, and the order requests cycle through.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Mix {
    pub(crate) weights: Vec<(Kind, u64)>,
    /// One cycle of a smooth weighted round robin: each kind `weight` times, spread evenly.
    pub(crate) cycle: Vec<Kind>,
}

impl Mix {
    pub(crate) fn parse(text: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Kind, u64)> = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix {part:?}: expected KIND=WEIGHT"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|kind| kind.name() == name.trim())
                .ok_or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|kind| kind.name()).collect();
                    format!("--mix {part:?}: unknown kind; use {}", known.join(", "))
                })?;
            let weight: u64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--mix {part:?}: the weight must be a whole number"))?;
            if weights.iter().any(|(seen, _)| *seen == kind) {
                return Err(format!("--mix: {} is given twice", kind.name()));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        let total: u64 = weights.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return Err("--mix: no kind has a positive weight".to_owned());
        }
        if total > 10_000 {
            return Err("--mix: the weights add up to more than 10000".to_owned());
        }
        let mut current: Vec<i64> = vec![0; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (credit, (_, weight)) in current.iter_mut().zip(&weights) {
                *credit += *weight as i64;
            }
            let best = (0..weights.len())
                .max_by_key(|&index| (current[index], std::cmp::Reverse(index)))
                .unwrap_or(0);
            current[best] -= total as i64;
            cycle.push(weights[best].0);
        }
        Ok(Mix { weights, cycle })
    }

    pub(crate) fn kind(&self, seq: u64) -> Kind {
        self.cycle[(seq % self.cycle.len() as u64) as usize]
    }

    pub(crate) fn describe(&self) -> Value {
        let weights: serde_json::Map<String, Value> = self
            .weights
            .iter()
            .map(|(kind, weight)| (kind.name().to_owned(), json!(weight)))
            .collect();
        Value::Object(weights)
    }
}

// ------------------------------------------------------------------------ the timetables

/// One request of the open-loop timetable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Item {
    /// When it is due, from the start of the run.
    pub(crate) offset: Duration,
    pub(crate) target: usize,
    pub(crate) measured: bool,
}

/// The open-loop timetable: request `j` is due at `j / rate`. First `warmup_per_target`
/// requests per target, round robin; then slices of `per_slice` consecutive requests, the
/// targets taking turns, `slices_per_target` slices each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OpenPlan {
    pub(crate) rate: f64,
    pub(crate) targets: u64,
    pub(crate) per_slice: u64,
    pub(crate) slices_per_target: u64,
    pub(crate) warmup_per_target: u64,
}

impl OpenPlan {
    pub(crate) fn new(
        rate: f64,
        duration_s: f64,
        slice_ms: u64,
        warmup_ms: u64,
        targets: usize,
    ) -> Self {
        let per_slice = ((rate * slice_ms as f64 / 1000.0).round() as u64).max(1);
        let wanted = ((rate * duration_s).round() as u64).max(1);
        OpenPlan {
            rate,
            targets: targets.max(1) as u64,
            per_slice,
            slices_per_target: wanted.div_ceil(per_slice),
            warmup_per_target: (rate * warmup_ms as f64 / 1000.0).round() as u64,
        }
    }

    pub(crate) fn warmup_total(&self) -> u64 {
        self.warmup_per_target * self.targets
    }

    pub(crate) fn measured_per_target(&self) -> u64 {
        self.per_slice * self.slices_per_target
    }

    pub(crate) fn total(&self) -> u64 {
        self.warmup_total() + self.measured_per_target() * self.targets
    }

    /// Measured seconds of each target (its slices, back to back).
    pub(crate) fn measured_seconds(&self) -> f64 {
        self.measured_per_target() as f64 / self.rate
    }

    pub(crate) fn item(&self, j: u64) -> Item {
        let offset = Duration::from_secs_f64(j as f64 / self.rate);
        let warmup = self.warmup_total();
        if j < warmup {
            return Item {
                offset,
                target: (j % self.targets) as usize,
                measured: false,
            };
        }
        let slice = (j - warmup) / self.per_slice;
        Item {
            offset,
            target: (slice % self.targets) as usize,
            measured: true,
        }
    }
}

/// The closed-loop timetable: a warm-up slice per target, then measured slices in turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ClosedPlan {
    pub(crate) targets: u32,
    pub(crate) warmup: Duration,
    pub(crate) slice: Duration,
    pub(crate) slices_per_target: u32,
}

impl ClosedPlan {
    pub(crate) fn new(duration_s: f64, slice_ms: u64, warmup_ms: u64, targets: usize) -> Self {
        let slice_ms = slice_ms.max(1);
        let wanted_ms = (duration_s * 1000.0).round().max(1.0) as u64;
        ClosedPlan {
            targets: targets.max(1) as u32,
            warmup: Duration::from_millis(warmup_ms),
            slice: Duration::from_millis(slice_ms),
            slices_per_target: wanted_ms.div_ceil(slice_ms) as u32,
        }
    }

    pub(crate) fn measured_seconds(&self) -> f64 {
        (self.slice * self.slices_per_target).as_secs_f64()
    }

    /// Which target a request sent `elapsed` after the start goes to, and whether it is
    /// measured; None once the run is over.
    pub(crate) fn phase_at(&self, elapsed: Duration) -> Option<(usize, bool)> {
        let warmup_total = self.warmup * self.targets;
        if elapsed < warmup_total {
            let target = elapsed.as_nanos() / self.warmup.as_nanos();
            return Some((target as usize, false));
        }
        let slice = (elapsed - warmup_total).as_nanos() / self.slice.as_nanos();
        if slice >= u128::from(self.slices_per_target * self.targets) {
            return None;
        }
        Some(((slice % u128::from(self.targets)) as usize, true))
    }
}

// ------------------------------------------------------------------------ percentiles
