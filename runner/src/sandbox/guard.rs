//! The platform's ports, shut out of runs whose network policy is `full`.
//!
//! Landlock cannot deny a port, only allow; a domain that allows every port but the platform's
//! (control, the edge, the broker, the database, the blob store: whatever the runner is told)
//! has some 65,000 rules and takes 7-10 ms to apply. One thread of the runner applies it once
//! and starts every sandboxed `full` run and every zygote, which inherit it; Landlock domains
//! belong to threads, so the runner's other threads keep their network. Runs with an
//! allow-list are started elsewhere: the list is what the task asked for, platform ports
//! included.
//!
//! Inheriting is free, but each run then restricts itself again (its file rules), and a new
//! domain copies every rule of the one beneath it: about 8 ms per run, cold or warm. That is
//! why the guard is opt-in (`--shut-out-platform-ports`).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Mutex;

use crate::netpolicy;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The thread that starts `full` runs under the ports' domain.
pub struct PortGuard {
    jobs: Mutex<mpsc::Sender<Job>>,
    ports: Vec<u16>,
}

impl PortGuard {
    /// Starts the thread and applies the domain that shuts out `ports`.
    pub fn start(ports: &[u16]) -> io::Result<PortGuard> {
        let ruleset = netpolicy::deny_only(ports)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, applied) = mpsc::sync_channel::<io::Result<()>>(1);
        std::thread::Builder::new()
            .name("sandbox-ports".into())
            .spawn(move || {
                let restricted = netpolicy::restrict_thread(&ruleset);
                drop(ruleset);
                let ok = restricted.is_ok();
                let _ = ready.send(restricted);
                if ok {
                    for job in queue {
                        job();
                    }
                }
            })?;
        applied
            .recv()
            .map_err(|_| io::Error::other("the ports' thread ended at start"))??;
        Ok(PortGuard {
            jobs: Mutex::new(jobs),
            ports: ports.to_vec(),
        })
    }

    /// The ports shut out.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Runs `f` on the guard's thread, waiting for it: what it starts inherits the domain. An
    /// error only if that thread is gone (it never ends once started).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let (done, result) = mpsc::sync_channel(1);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
        });
        // SAFETY: the job may borrow from the caller's frame. This function returns only once
        // the job has run (its result arrived) or has been dropped unrun (the channel to it
        // closed, which happens when the job, holding `done`, is dropped), so no borrow
        // outlives the frame.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let sent = crate::lock(&self.jobs).send(job);
        // A job refused by a gone thread comes back in the error and is dropped here.
        drop(sent);
        match result.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(io::Error::other("the sandbox's ports thread is gone")),
        }
    }
}
