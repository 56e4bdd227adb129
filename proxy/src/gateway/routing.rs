//! Which upstreams a request may use, in which order: the model's balancing
//! strategy picks the first, the rest follow in config order, then the
//! fallback models' upstreams. Also the per-upstream state the choice depends
//! on: requests in flight and passive health (ejection after consecutive
//! failures).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::file::Config;
use crate::config::tables::Strategy;

/// One place a request can be sent: a model (which decides the upstream model
/// name) on one of its upstreams. Indices are positions in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub model: usize,
    pub upstream: usize,
}

pub struct Routing {
    models: Vec<ModelRoute>,
    /// Shared with the in-flight guards, which may outlive the request handler
    /// (a stream body holds one until it ends) and report a stream that broke.
    upstreams: Vec<Arc<UpstreamState>>,
}

struct ModelRoute {
    upstreams: Vec<usize>,
    weights: Vec<i64>,
    strategy: Strategy,
    fallbacks: Vec<usize>,
    /// Round robin position.
    turn: AtomicUsize,
    /// Smooth weighted round robin: the running "current weight" of each upstream.
    current: Mutex<Vec<i64>>,
}

struct UpstreamState {
    in_flight: AtomicUsize,
    health: Mutex<Health>,
    failure_threshold: u32,
    cooldown: Duration,
}

impl UpstreamState {
    fn record_success(&self) {
        let mut health = lock(&self.health);
        health.consecutive_failures = 0;
        health.ejected_until = None;
    }

    fn record_failure(&self, now: Instant) -> bool {
        let mut health = lock(&self.health);
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        if health.consecutive_failures >= self.failure_threshold {
            health.ejected_until = Some(now + self.cooldown);
            return true;
        }
        false
    }
}

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

impl Health {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| until > now)
    }
}

/// What `/status` shows for one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    pub healthy: bool,
    pub consecutive_failures: u32,
    /// Unix time in milliseconds; `None` when the upstream is not ejected.
    pub ejected_until_ms: Option<u64>,
    pub in_flight: usize,
}

/// Counts one attempt in flight on an upstream until dropped, and reports how
/// the attempt went to the upstream's passive health.
pub struct InFlight(Arc<UpstreamState>);

impl InFlight {
    pub fn record_success(&self) {
        self.0.record_success();
    }

    /// Returns true when this failure ejected the upstream (or renewed its ejection).
    pub fn record_failure(&self) -> bool {
        self.0.record_failure(Instant::now())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Routing {
    /// `config` must have been validated: every name it refers to exists.
    pub fn new(config: &Config) -> Self {
        let upstream_index = |name: &String| {
            config
                .upstreams
                .iter()
                .position(|upstream| &upstream.name == name)
                .unwrap_or_default()
        };
        let model_index = |name: &String| {
            config
                .models
                .iter()
                .position(|model| &model.name == name)
                .unwrap_or_default()
        };
        let models = config
            .models
            .iter()
            .map(|model| {
                let upstreams: Vec<usize> = model.upstreams.iter().map(upstream_index).collect();
                let weights = upstreams
                    .iter()
                    .map(|&index| i64::from(config.upstreams[index].weight))
                    .collect();
                ModelRoute {
                    current: Mutex::new(vec![0; upstreams.len()]),
                    upstreams,
                    weights,
                    strategy: model.strategy,
                    fallbacks: model.fallback_models.iter().map(model_index).collect(),
                    turn: AtomicUsize::new(0),
                }
            })
            .collect();
        let upstreams = config
            .upstreams
            .iter()
            .map(|_| {
                Arc::new(UpstreamState {
                    in_flight: AtomicUsize::new(0),
                    health: Mutex::new(Health::default()),
                    failure_threshold: config.health.failure_threshold,
                    cooldown: Duration::from_millis(config.health.cooldown_ms),
                })
            })
            .collect();
        Routing { models, upstreams }
    }

    /// The candidates for one request to `model`, in the order to try them.
    /// Fallback models are ordered only when reached, so a model that serves
    /// as someone's fallback keeps its own rotation undisturbed.
    pub fn plan(&self, model: usize) -> Plan<'_> {
        self.plan_within(model, |_| true)
    }

    /// The plan on the `allowed` upstreams alone (e.g. the one that holds a
    /// response a request continues); ejection is judged among them.
    pub fn plan_within(&self, model: usize, allowed: impl Fn(usize) -> bool) -> Plan<'_> {
        let now = Instant::now();
        let mut skip: Vec<bool> = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(upstream, state)| !allowed(upstream) || lock(&state.health).ejected(now))
            .collect();
        let every_candidate_ejected = self.reachable(model).all(|upstream| skip[upstream]);
        // Trying an ejected upstream beats refusing the request outright.
        if every_candidate_ejected {
            for (upstream, skipped) in skip.iter_mut().enumerate() {
                *skipped = !allowed(upstream);
            }
        }
        Plan {
            routing: self,
            skip,
            queue: VecDeque::new(),
            models: std::iter::once(model)
                .chain(self.models[model].fallbacks.iter().copied())
                .collect(),
            next_model: 0,
        }
    }

    /// Every upstream `model` or one of its fallbacks may be sent to.
    pub fn reachable(&self, model: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(model)
            .chain(self.models[model].fallbacks.iter().copied())
            .flat_map(|model| self.models[model].upstreams.iter().copied())
    }

    /// The model's upstreams, starting with the strategy's pick, then the
    /// others in config order (wrapping around).
    fn ordered(&self, model: usize, skip: &[bool]) -> Vec<usize> {
        let route = &self.models[model];
        let count = route.upstreams.len();
        if count == 0 {
            return Vec::new();
        }
        let first = match route.strategy {
            Strategy::RoundRobin => route.turn.fetch_add(1, Ordering::Relaxed) % count,
            Strategy::Weighted => smooth_weighted_pick(&mut lock(&route.current), &route.weights),
            Strategy::LeastInFlight => {
                let loads: Vec<usize> = route
                    .upstreams
                    .iter()
                    .map(|&upstream| self.upstreams[upstream].in_flight.load(Ordering::Relaxed))
                    .collect();
                let usable: Vec<bool> = route.upstreams.iter().map(|&u| !skip[u]).collect();
                least_loaded(&loads, &usable)
            }
        };
        (0..count)
            .map(|offset| route.upstreams[(first + offset) % count])
            .collect()
    }

    pub fn start(&self, upstream: usize) -> InFlight {
        let state = self.upstreams[upstream].clone();
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }

    pub fn in_flight(&self, upstream: usize) -> usize {
        self.upstreams[upstream].in_flight.load(Ordering::Relaxed)
    }

    pub fn record_success(&self, upstream: usize) {
        self.upstreams[upstream].record_success();
    }

    /// Returns true when this failure ejected the upstream (or renewed its ejection).
    pub fn record_failure(&self, upstream: usize) -> bool {
        self.upstreams[upstream].record_failure(Instant::now())
    }

    pub fn health(&self, upstream: usize) -> UpstreamHealth {
        let now = Instant::now();
        let state = &self.upstreams[upstream];
        let health = lock(&state.health);
        let ejected_until_ms = health
            .ejected_until
            .filter(|&until| until > now)
            .map(|until| unix_millis(SystemTime::now() + (until - now)));
        UpstreamHealth {
            healthy: ejected_until_ms.is_none(),
            consecutive_failures: health.consecutive_failures,
            ejected_until_ms,
            in_flight: state.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Candidates in order; produced lazily, see [`Routing::plan`].
pub struct Plan<'a> {
    routing: &'a Routing,
    /// Upstreams left out because they were ejected when the plan was made.
    skip: Vec<bool>,
    queue: VecDeque<Candidate>,
    models: Vec<usize>,
    next_model: usize,
}

impl Iterator for Plan<'_> {
    type Item = Candidate;

    fn next(&mut self) -> Option<Candidate> {
        while self.queue.is_empty() {
            let &model = self.models.get(self.next_model)?;
            self.next_model += 1;
            let ordered = self.routing.ordered(model, &self.skip);
            self.queue.extend(
                ordered
                    .into_iter()
                    .filter(|&upstream| !self.skip[upstream])
                    .map(|upstream| Candidate { model, upstream }),
            );
        }
        self.queue.pop_front()
    }
}

/// nginx's smooth weighted round robin: deterministic, and spreads the heavy
/// upstream's turns out instead of sending them in a burst.
fn smooth_weighted_pick(current: &mut [i64], weights: &[i64]) -> usize {
    let total: i64 = weights.iter().sum();
    let mut best = 0;
    for (index, weight) in weights.iter().enumerate() {
        current[index] += weight;
        if current[index] > current[best] {
            best = index;
        }
    }
    current[best] -= total;
    best
}

/// Fewest in flight among the usable upstreams, the first in config order on a
/// tie; among all of them if none is usable.
fn least_loaded(loads: &[usize], usable: &[bool]) -> usize {
    let any_usable = usable.iter().any(|&u| u);
    loads
        .iter()
        .enumerate()
        .filter(|&(index, _)| !any_usable || usable[index])
        .min_by_key(|&(index, &load)| (load, index))
        .map_or(0, |(index, _)| index)
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few plain assignments, so state behind a
    // poisoned lock is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(text: &str) -> (Config, Routing) {
        let config = Config::parse(text, "test.toml", |_| None).unwrap();
        let routing = Routing::new(&config);
        (config, routing)
    }

    fn upstreams(names: &[(&str, u32)]) -> String {
        names
            .iter()
            .map(|(name, weight)| {
                format!(
                    "[[upstreams]]\nname = \"{name}\"\nbase_url = \"http://127.0.0.1:1/{name}\"\nweight = {weight}\n"
                )
            })
            .collect()
    }

    fn first_choices(config: &Config, routing: &Routing, model: usize, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let first = routing.plan(model).next().unwrap();
                config.upstreams[first.upstream].name.clone()
            })
            .collect()
    }

    fn count(names: &[String], name: &str) -> usize {
        names.iter().filter(|n| *n == name).count()
    }

    fn names(config: &Config, plan: Plan<'_>) -> Vec<String> {
        plan.map(|c| {
            format!(
                "{}@{}",
                config.models[c.model].name, config.upstreams[c.upstream].name
            )
        })
        .collect()
    }

    #[test]
    fn round_robin_splits_exactly_and_lists_the_rest_in_config_order() {
        let text = upstreams(&[("a", 1), ("b", 1)])
            + "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\"]\n";
        let (config, routing) = routing(&text);
        let picks = first_choices(&config, &routing, 0, 100);
        assert_eq!((count(&picks, "a"), count(&picks, "b")), (50, 50));
        assert_eq!(&picks[..4], ["a", "b", "a", "b"]);
        assert_eq!(names(&config, routing.plan(0)), ["m@a", "m@b"]);
        assert_eq!(names(&config, routing.plan(0)), ["m@b", "m@a"]);
    }

    #[test]
    fn weighted_three_to_one_gives_exactly_75_25_and_interleaves() {
        let text = upstreams(&[("a", 3), ("b", 1)])
            + "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\"]\nstrategy = \"weighted\"\n";
        let (config, routing) = routing(&text);
        let picks = first_choices(&config, &routing, 0, 100);
        assert_eq!((count(&picks, "a"), count(&picks, "b")), (75, 25));
        assert_eq!(&picks[..4], ["a", "a", "b", "a"]);
    }

    #[test]
    fn weighted_equal_weights_alternate() {
        let text = upstreams(&[("a", 2), ("b", 2)])
            + "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\"]\nstrategy = \"weighted\"\n";
        let (config, routing) = routing(&text);
        let picks = first_choices(&config, &routing, 0, 100);
        assert_eq!((count(&picks, "a"), count(&picks, "b")), (50, 50));
    }

    #[test]
    fn least_in_flight_prefers_the_idle_upstream_and_breaks_ties_in_config_order() {
        let text = upstreams(&[("a", 1), ("b", 1), ("c", 1)])
            + "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\", \"c\"]\nstrategy = \"least_in_flight\"\n";
        let (config, routing) = routing(&text);
        assert_eq!(names(&config, routing.plan(0)), ["m@a", "m@b", "m@c"]);
        let busy_a = routing.start(0);
        assert_eq!(names(&config, routing.plan(0)), ["m@b", "m@c", "m@a"]);
        let _busy_b = routing.start(1);
        let _busy_b2 = routing.start(1);
        assert_eq!(names(&config, routing.plan(0))[0], "m@c");
        let _busy_c = routing.start(2);
        // a: 1, b: 2, c: 1 -> a wins the tie with c by config order.
        assert_eq!(names(&config, routing.plan(0))[0], "m@a");
        drop(busy_a);
        assert_eq!(routing.in_flight(0), 0);
        assert_eq!(names(&config, routing.plan(0))[0], "m@a");
    }

    const FALLBACK: &str = "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\"]\nfallback_models = [\"f\"]\n\
        [[models]]\nname = \"f\"\nupstreams = [\"c\", \"d\"]\n";

    #[test]
    fn fallback_models_follow_and_are_ordered_only_when_reached() {
        let text = upstreams(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]) + FALLBACK;
        let (config, routing) = routing(&text);
        assert_eq!(
            names(&config, routing.plan(0)),
            ["m@a", "m@b", "f@c", "f@d"]
        );
        assert_eq!(
            names(&config, routing.plan(0)),
            ["m@b", "m@a", "f@d", "f@c"]
        );
        // Not reaching the fallback leaves its rotation where it was.
        routing.plan(0).next();
        assert_eq!(names(&config, routing.plan(1)), ["f@c", "f@d"]);
    }

    #[test]
    fn ejected_upstreams_are_left_out_unless_all_are() {
        let text = "[health]\nfailure_threshold = 2\ncooldown_ms = 60000\n".to_owned()
            + &upstreams(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)])
            + FALLBACK;
        let (config, routing) = routing(&text);
        assert!(!routing.record_failure(0));
        assert!(routing.health(0).healthy);
        assert!(routing.record_failure(0));
        let health = routing.health(0);
        assert!(!health.healthy);
        assert_eq!(health.consecutive_failures, 2);
        assert!(health.ejected_until_ms.is_some());
        assert_eq!(names(&config, routing.plan(0)), ["m@b", "f@c", "f@d"]);

        for upstream in 1..4 {
            routing.record_failure(upstream);
            routing.record_failure(upstream);
        }
        assert_eq!(names(&config, routing.plan(0)).len(), 4);

        routing.record_success(0);
        let health = routing.health(0);
        assert_eq!(
            (
                health.healthy,
                health.consecutive_failures,
                health.ejected_until_ms
            ),
            (true, 0, None)
        );
        assert_eq!(names(&config, routing.plan(0)), ["m@a"]);
    }

    #[test]
    fn a_plan_within_some_upstreams_judges_ejection_among_them_alone() {
        let text = "[health]\nfailure_threshold = 1\ncooldown_ms = 60000\n".to_owned()
            + &upstreams(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)])
            + FALLBACK;
        let (config, routing) = routing(&text);
        let only_b_and_d = |upstream: usize| upstream == 1 || upstream == 3;
        assert_eq!(
            names(&config, routing.plan_within(0, only_b_and_d)),
            ["m@b", "f@d"]
        );
        routing.record_failure(1);
        assert_eq!(
            names(&config, routing.plan_within(0, only_b_and_d)),
            ["f@d"]
        );
        // The one upstream allowed is tried though ejected: no other can serve.
        let only_b = |upstream: usize| upstream == 1;
        assert_eq!(names(&config, routing.plan_within(0, only_b)), ["m@b"]);
        assert_eq!(routing.reachable(0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(routing.reachable(1).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn ejection_ends_after_the_cooldown_and_one_more_failure_renews_it() {
        let text = "[health]\nfailure_threshold = 1\ncooldown_ms = 1000\n".to_owned()
            + &upstreams(&[("a", 1), ("b", 1)])
            + "[[models]]\nname = \"m\"\nupstreams = [\"a\", \"b\"]\n";
        let (_, routing) = routing(&text);
        let long_ago = Instant::now() - Duration::from_secs(5);
        assert!(routing.upstreams[0].record_failure(long_ago));
        let health = routing.health(0);
        assert!(health.healthy, "the cooldown is over");
        assert_eq!(health.consecutive_failures, 1);
        assert!(routing.record_failure(0));
        assert!(!routing.health(0).healthy);
    }

    #[test]
    fn smooth_weighted_handles_a_single_upstream() {
        let mut current = vec![0];
        for _ in 0..3 {
            assert_eq!(smooth_weighted_pick(&mut current, &[5]), 0);
        }
    }
}
