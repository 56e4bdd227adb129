//! Pacing: the timerfd ticker of the open loop, and both loops' drivers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::client::*;
use crate::plan::*;

/// Limits how late a sleeping thread may wake (Linux's default slack is 50 us).
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// A one-shot timer with microsecond precision that the runtime waits on like any socket
/// (a Linux timerfd): the runtime's own timer has millisecond granularity, and a pacing
/// thread of its own would add a cross-thread wake-up to every send.
pub(crate) struct Ticker {
    pub(crate) fd: AsyncFd<OwnedFd>,
}

impl Ticker {
    pub(crate) fn new() -> std::io::Result<Ticker> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd we own.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns `fd`, which stays open and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        Ok(Ticker { fd })
    }

    pub(crate) async fn sleep_until(&self, due: Instant) -> std::io::Result<()> {
        let Some(wait) = due
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        else {
            return Ok(());
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` outlives the call; the old value is not asked for (null).
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let expired = guard.try_io(|fd| {
                let mut count = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes long.
                let read =
                    unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
                if read < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match expired {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Runs the open-loop timetable; returns when the measured load began.
pub(crate) fn run_open(
    runtime: &Runtime,
    ctx: Arc<Ctx>,
    plan: OpenPlan,
) -> Result<Instant, String> {
    tighten_timer_slack();
    let start = Instant::now() + Duration::from_millis(20);
    let measured_from = plan.item(plan.warmup_total()).offset;
    runtime.block_on(async {
        let ticker = Ticker::new().map_err(|err| format!("cannot create a timerfd: {err}"))?;
        let mut requests = JoinSet::new();
        for j in 0..plan.total() {
            let item = plan.item(j);
            let due = start + item.offset;
            ticker
                .sleep_until(due)
                .await
                .map_err(|err| format!("timerfd: {err}"))?;
            let ctx = ctx.clone();
            let slot = Slot {
                target: item.target,
                measured: item.measured,
                at: item.offset.saturating_sub(measured_from),
            };
            requests.spawn(async move {
                let sent = Instant::now();
                measure(&ctx, slot, due, sent).await;
            });
            while requests.try_join_next().is_some() {}
        }
        while requests.join_next().await.is_some() {}
        Ok::<(), String>(())
    })?;
    Ok(start + measured_from)
}

/// Runs the closed loop; returns when the measured load began.
pub(crate) fn run_closed(
    runtime: &Runtime,
    ctx: Arc<Ctx>,
    plan: ClosedPlan,
    concurrency: usize,
) -> Instant {
    let start = Instant::now();
    let measured_from = plan.warmup * plan.targets;
    runtime.block_on(async {
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let ctx = ctx.clone();
            workers.spawn(async move {
                while let Some((target, measured)) = plan.phase_at(start.elapsed()) {
                    let sent = Instant::now();
                    let at = sent.saturating_duration_since(start + measured_from);
                    let slot = Slot {
                        target,
                        measured,
                        at,
                    };
                    measure(&ctx, slot, sent, sent).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    });
    start + measured_from
}

// ------------------------------------------------------------------------ setup and report
