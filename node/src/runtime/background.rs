//! One job at a time off the processor's task: on a thread of its own in a real server;
//! under madsim (no threads) deferred to the end of the processor's next step, so the
//! simulator too runs other work between a job's start and its result.
//!
//! Used for serializing and writing snapshots ([`super::snapshotter`]) and for a leader
//! serializing the snapshot it sends a learner (SNAP).

/// A job running (or about to run) in the background, whose result the processor collects
/// with [`Background::poll`] at the end of each step, or waits for with
/// [`Background::wait`].
pub struct Background<T> {
    in_flight: Option<InFlight<T>>,
}

impl<T> Default for Background<T> {
    fn default() -> Self {
        Background { in_flight: None }
    }
}

use std::sync::Arc;

use tokio::sync::Notify;

type Job<T> = Box<dyn FnOnce() -> T + Send>;

enum InFlight<T> {
    #[cfg(not(madsim))]
    Thread {
        done: std::sync::mpsc::Receiver<T>,
        thread: std::thread::JoinHandle<()>,
    },
    #[cfg(madsim)]
    Deferred {
        job: Job<T>,
        /// Set at the end of the step that started the job; the job runs at the end of the
        /// next one.
        armed: bool,
    },
}

/// Why [`Background::wait`] has no result: the job's thread ended without one (it
/// panicked).
#[derive(Debug, thiserror::Error)]
#[error("the background thread stopped without a result")]
pub struct Lost;

impl<T: Send + 'static> Background<T> {
    /// Whether a job is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts `job` (the caller checks [`Background::busy`] first) on a thread named
    /// `name`, which notifies `wake` when the result is ready (so the processor's loop
    /// collects it without waiting for its next tick).
    pub fn start(
        &mut self,
        name: &'static str,
        wake: &Arc<Notify>,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<()> {
        debug_assert!(!self.busy(), "one job at a time");
        let job: Job<T> = Box::new(job);
        #[cfg(not(madsim))]
        {
            let (tx, done) = std::sync::mpsc::channel();
            let wake = wake.clone();
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let _ = tx.send(job());
                    wake.notify_one();
                })?;
            self.in_flight = Some(InFlight::Thread { done, thread });
        }
        #[cfg(madsim)]
        {
            let _ = (name, wake);
            self.in_flight = Some(InFlight::Deferred { job, armed: false });
        }
        Ok(())
    }

    /// The job's result if it finished since the last call; never blocks. Call once at the
    /// end of every processor step.
    pub fn poll(&mut self) -> Option<Result<T, Lost>> {
        match self.in_flight.as_mut()? {
            #[cfg(not(madsim))]
            InFlight::Thread { done, .. } => match done.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Ok(result) => {
                    self.join();
                    Some(Ok(result))
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.wait(),
            },
            #[cfg(madsim)]
            InFlight::Deferred { armed, .. } => {
                if *armed {
                    self.wait()
                } else {
                    *armed = true;
                    None
                }
            }
        }
    }

    /// Waits for the job in flight, if any, and returns its result.
    pub fn wait(&mut self) -> Option<Result<T, Lost>> {
        match self.in_flight.take()? {
            #[cfg(not(madsim))]
            InFlight::Thread { done, thread } => {
                let result = done.recv().map_err(|_| Lost);
                let _ = thread.join();
                Some(result)
            }
            #[cfg(madsim)]
            InFlight::Deferred { job, .. } => Some(Ok(job())),
        }
    }

    /// Forgets the job in flight: its result, when it comes, is dropped (the thread is not
    /// waited for).
    pub fn abandon(&mut self) {
        self.in_flight = None;
    }

    #[cfg(not(madsim))]
    fn join(&mut self) {
        if let Some(InFlight::Thread { thread, .. }) = self.in_flight.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn runs_one_job_and_hands_back_its_result() {
        let mut bg = Background::default();
        assert!(!bg.busy());
        assert!(bg.poll().is_none());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        bg.start("test", &Arc::new(Notify::new()), move || {
            wait.recv().unwrap();
            42
        })
        .unwrap();
        assert!(bg.busy());
        // Held: nothing to collect yet.
        assert!(bg.poll().is_none());
        go.send(()).unwrap();
        assert_eq!(bg.wait().unwrap().unwrap(), 42);
        assert!(!bg.busy());
        assert!(bg.wait().is_none());
    }

    #[test]
    fn a_panicking_job_is_reported_lost() {
        let mut bg: Background<u32> = Background::default();
        bg.start("test", &Arc::new(Notify::new()), || panic!("deliberate"))
            .unwrap();
        assert!(bg.wait().unwrap().is_err());
        assert!(!bg.busy());
    }

    #[test]
    fn poll_collects_a_finished_job() {
        let mut bg = Background::default();
        bg.start("test", &Arc::new(Notify::new()), || "done")
            .unwrap();
        let mut got = None;
        for _ in 0..1000 {
            if let Some(r) = bg.poll() {
                got = Some(r.unwrap());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, Some("done"));
        assert!(!bg.busy());
    }
}
