//! [`RunStore::create_run`] as a group commit: runs created while the writer is busy wait
//! together and are written in one transaction (one multi-row insert of runs, one of their
//! history lines, one commit, which on SQLite is one `fsync`) instead of one transaction each.
//!
//! No background task is kept: the caller that finds the queue empty spawns a committer, which
//! first waits for a write connection and only then takes everything queued by that time. A run
//! created after the take finds the queue empty again and spawns the next committer, so a
//! queued run always has exactly one committer coming for it. The committer is spawned rather
//! than run by its caller so that a caller that goes away (a closed HTTP connection drops its
//! request) cannot abandon the others' transaction half-way.
//!
//! A run with an idempotency key ([`NewRun::key`]) claims it in the same transaction
//! (`hooks.rs`); one whose key is held, by an earlier run or by one before it in the group, is
//! not written and its caller is told `Conflict`, while the rest of the group commits.
//!
//! If the group's transaction fails, its runs are written again one by one, so one run's error
//! stays its own. When the database is unreachable, every waiter is told at once instead of
//! each waiting out a connection timeout in turn. Each caller gets the row that was written,
//! not a read-back.

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::*;

/// Runs waiting for the next group commit.
#[derive(Default)]
pub(super) struct PendingRuns(Mutex<Vec<PendingRun>>);

/// A run to insert and who waits for it; the answer is the time it was queued at.
struct PendingRun {
    id: String,
    new: NewRun,
    job: Job,
    created: oneshot::Sender<StoreResult<i64>>,
}

impl PendingRuns {
    /// Queues one; true if the queue was empty (the caller must start a committer).
    fn push(&self, run: PendingRun) -> bool {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queue.push(run);
        queue.len() == 1
    }

    fn take(&self) -> Vec<PendingRun> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Times a group is written before a deadlock is its callers' error.
const DEADLOCK_TRIES: u32 = 4;

impl SqlStore {
    /// Queues a run for the next group commit and waits for it.
    pub(super) async fn create_run_queued(&self, new: &NewRun) -> StoreResult<(Run, Job)> {
        let id = new_id();
        let job = first_job(&id, new);
        let (created, queued_at) = oneshot::channel();
        let run = PendingRun {
            id: id.clone(),
            new: new.clone(),
            job: job.clone(),
            created,
        };
        if self.pending_runs.push(run) {
            let store = self.clone();
            tokio::spawn(async move { store.commit_pending_runs().await });
        }
        let at_ms = queued_at.await.map_err(|_| {
            StoreError::Db(sqlx::Error::Protocol(
                "the run's commit was abandoned".into(),
            ))
        })??;
        Ok((queued_run(id, new, at_ms), job))
    }

    /// Writes every queued run in one transaction; if that fails, each in its own, so that one
    /// run's error stays its own, unless the database is unreachable: then every waiter is told
    /// so at once (trying each in turn would make the last wait out one timeout per run).
    async fn commit_pending_runs(&self) {
        let tx = self.writes.begin().await;
        // Taken only now: what queued while this waited for the writer goes in the same commit.
        let runs = self.pending_runs.take();
        let at_ms = crate::time::now_ms();
        let together = match tx {
            Ok(tx) => match self.insert_pending(tx, &runs, at_ms).await {
                Err(e) if e.is_deadlock() => self.write_again(&runs, at_ms).await,
                done => done,
            },
            Err(e) => Err(e.into()),
        };
        let mut down = match together {
            Ok(written) => {
                for (run, written) in runs.into_iter().zip(written) {
                    let _ = run.created.send(answer(written, at_ms));
                }
                return;
            }
            Err(e) if runs.len() == 1 => {
                if let Some(run) = runs.into_iter().next() {
                    let _ = run.created.send(Err(e));
                }
                return;
            }
            Err(e) => e.is_unavailable().then_some(e),
        };
        for run in runs {
            let result = match &down {
                Some(e) => Err(unavailable_again(e)),
                None => self
                    .write_again(std::slice::from_ref(&run), at_ms)
                    .await
                    .and_then(|written| answer(written[0], at_ms)),
            };
            if let Some(e) = result.as_ref().err().filter(|e| e.is_unavailable()) {
                down = Some(unavailable_again(e));
            }
            let _ = run.created.send(result);
        }
    }

    /// Writes `runs` in a transaction of their own, again while the database breaks it for a
    /// deadlock (MySQL/MariaDB take gap locks where two groups claim the same idempotency key
    /// at once), at most [`DEADLOCK_TRIES`] times.
    async fn write_again(&self, runs: &[PendingRun], at_ms: i64) -> StoreResult<Vec<bool>> {
        let mut tries = 0;
        loop {
            tries += 1;
            let tx = self.writes.begin().await?;
            match self.insert_pending(tx, runs, at_ms).await {
                Err(e) if e.is_deadlock() && tries < DEADLOCK_TRIES => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * tries as u64)).await;
                }
                done => return done,
            }
        }
    }

    /// Writes `runs` in `tx` and commits; which of them were written (a run whose key is held
    /// is not).
    async fn insert_pending(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        runs: &[PendingRun],
        at_ms: i64,
    ) -> StoreResult<Vec<bool>> {
        let mut written = Vec::with_capacity(runs.len());
        for r in runs {
            written.push(match &r.new.key {
                Some(key) => self.claim_key(&mut tx, key, &r.id, at_ms).await?,
                None => true,
            });
        }
        let kept = || {
            runs.iter()
                .zip(&written)
                .filter(|(_, w)| **w)
                .map(|(r, _)| r)
        };
        let rows: Vec<_> = kept()
            .map(|r| (r.id.clone(), &r.new, r.job.clone(), at_ms))
            .collect();
        let history: Vec<_> = kept()
            .map(|r| queued_entry(&r.id, &r.new.trigger, at_ms))
            .collect();
        self.insert_runs(&mut tx, &rows, at_ms, false).await?;
        self.insert_history(&mut tx, &history).await?;
        tx.commit().await?;
        Ok(written)
    }
}

/// What the caller of a run is told: its queue time, or that its key is held.
fn answer(written: bool, at_ms: i64) -> StoreResult<i64> {
    match written {
        true => Ok(at_ms),
        false => Err(StoreError::Conflict(
            "a run with this idempotency key".into(),
        )),
    }
}

/// Another "database unreachable" error like `e` for another waiter (sqlx's errors are not
/// `Clone`), still [`StoreError::is_unavailable`].
fn unavailable_again(e: &StoreError) -> StoreError {
    use sqlx::Error as E;
    StoreError::Db(match e {
        StoreError::Db(E::PoolClosed) => E::PoolClosed,
        StoreError::Db(E::WorkerCrashed) => E::WorkerCrashed,
        StoreError::Db(E::Io(io)) => E::Io(std::io::Error::new(io.kind(), io.to_string())),
        StoreError::Db(E::Tls(tls)) => E::Tls(tls.to_string().into()),
        _ => E::PoolTimedOut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_stays_unreachable_for_every_waiter() {
        use sqlx::Error as E;
        let io = || {
            E::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        };
        for e in [
            E::PoolClosed,
            E::PoolTimedOut,
            E::WorkerCrashed,
            io(),
            E::Tls("handshake".into()),
        ] {
            let first = StoreError::Db(e);
            assert!(first.is_unavailable());
            let again = unavailable_again(&first);
            assert!(again.is_unavailable(), "{first} became {again}");
            assert_eq!(again.to_string(), first.to_string());
        }
    }
}
