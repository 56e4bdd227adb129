//! Where log lines go: a bounded buffer that a background thread writes out.
//! A full buffer (a log destination slower than the requests, or stalled)
//! drops lines and counts them (`switchyard_log_lines_dropped_total`) instead
//! of making the runtime's workers wait: one slow disk or pipe must not stall
//! every request.

use std::io::Write;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines held while the destination catches up (tracing-appender's default).
pub const BUFFERED_LINES: usize = 128_000;

/// The writer for the log subscriber, the counter of the lines it dropped,
/// and the guard that flushes what is buffered when it is dropped.
pub fn log_writer<W: Write + Send + 'static>(
    destination: W,
    buffered_lines: usize,
) -> (NonBlocking, ErrorCounter, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(buffered_lines)
        .thread_name("switchyard-log")
        .finish(destination);
    let dropped = writer.error_counter();
    (writer, dropped, guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A destination that takes nothing until the test lets it.
    struct Stalled(mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_destination_drops_and_counts_lines_instead_of_blocking_the_writer() {
        let (release, stalled) = mpsc::channel();
        let (writer, dropped, guard) = log_writer(Stalled(stalled), 8);
        // On a thread of its own, so that a writer that blocks fails the test
        // instead of hanging it.
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let mut writer = writer;
            for line in 0..1_000 {
                writer
                    .write_all(format!("line {line}\n").as_bytes())
                    .unwrap();
            }
            done.send(()).unwrap();
        });
        let wrote = finished.recv_timeout(Duration::from_secs(20));
        drop(release);
        drop(guard);
        assert!(wrote.is_ok(), "writing to a full buffer blocked");
        // At most the buffer and the line in the destination's hands got through.
        assert!(
            dropped.dropped_lines() >= 1_000 - 8 - 1,
            "{}",
            dropped.dropped_lines()
        );
    }
}
