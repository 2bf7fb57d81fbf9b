//! Retention policies: how long ended runs and the audit trail are kept.
//!
//! The global policy is one row of the store's settings; a task may carry its own
//! ([`TaskRetention`] in its spec), which replaces the global one for its runs. A run's history
//! and log archive go with it. A pinned run (`keep`) and a run that has not ended are never
//! pruned. The pruner (the scheduler leader's) applies the policies; `GET /retention/preview`
//! counts what it would delete.

use serde::{Deserialize, Serialize};

/// Most days a policy may name (about 100 years): bounds the arithmetic.
pub const MAX_DAYS: u32 = 36_500;
/// Most runs per task a policy may keep.
pub const MAX_KEEP_LAST: u32 = 1_000_000;

const DAY_MS: i64 = 86_400_000;

/// The cluster-wide policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Ended runs older than this many days are deleted; `None` keeps them by age.
    pub runs_days: Option<u32>,
    /// Only the newest this many ended runs of each task are kept; `None` keeps them by count.
    pub runs_keep_last: Option<u32>,
    /// Audit entries older than this many days are deleted; `None` (the default) keeps them.
    pub audit_days: Option<u32>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            runs_days: Some(30),
            runs_keep_last: None,
            audit_days: None,
        }
    }
}

/// A task's own policy for its runs; a field left out takes the global policy's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TaskRetention {
    pub days: Option<u32>,
    pub keep_last: Option<u32>,
}

impl RetentionPolicy {
    /// Refuses a policy out of bounds, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        check_days("runs_days", self.runs_days)?;
        check_days("audit_days", self.audit_days)?;
        check_keep("runs_keep_last", self.runs_keep_last)
    }

    /// The policy that applies to a task's runs: its own fields over the global ones.
    pub fn for_task(&self, task: Option<&TaskRetention>) -> TaskRetention {
        TaskRetention {
            days: task.and_then(|t| t.days).or(self.runs_days),
            keep_last: task.and_then(|t| t.keep_last).or(self.runs_keep_last),
        }
    }
}

impl TaskRetention {
    pub fn validate(&self) -> Result<(), String> {
        check_days("retention.days", self.days)?;
        check_keep("retention.keep_last", self.keep_last)
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_none() && self.keep_last.is_none()
    }
}

/// Entries older than this are expired under `days` at `now_ms`.
pub fn cutoff(now_ms: i64, days: u32) -> i64 {
    now_ms - i64::from(days) * DAY_MS
}

fn check_days(field: &str, days: Option<u32>) -> Result<(), String> {
    match days {
        Some(0) => Err(format!(
            "{field}: must be at least 1 (leave it out to keep forever)"
        )),
        Some(d) if d > MAX_DAYS => Err(format!("{field}: at most {MAX_DAYS}")),
        _ => Ok(()),
    }
}

fn check_keep(field: &str, n: Option<u32>) -> Result<(), String> {
    match n {
        Some(0) => Err(format!(
            "{field}: must be at least 1 (leave it out to keep all)"
        )),
        Some(n) if n > MAX_KEEP_LAST => Err(format!("{field}: at most {MAX_KEEP_LAST}")),
        _ => Ok(()),
    }
}

/// What one prune pass deleted, or a preview would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneCounts {
    pub runs: u64,
    pub audit: u64,
    /// Sent or failed alert deliveries, kept as long as runs.
    #[serde(default)]
    pub deliveries: u64,
    /// Webhook idempotency keys past their window.
    #[serde(default)]
    pub run_keys: u64,
}

/// A run the pruner is about to delete: enough to delete its log archive first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunableRun {
    pub id: String,
    pub closed_at: i64,
    pub log_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_policy_overrides_the_global_one_field_by_field() {
        let global = RetentionPolicy {
            runs_days: Some(30),
            runs_keep_last: Some(100),
            audit_days: None,
        };
        let own = TaskRetention {
            days: Some(7),
            keep_last: None,
        };
        assert_eq!(
            global.for_task(Some(&own)),
            TaskRetention {
                days: Some(7),
                keep_last: Some(100)
            }
        );
        assert_eq!(global.for_task(None).days, Some(30));
        assert!(RetentionPolicy {
            runs_days: Some(0),
            ..global
        }
        .validate()
        .is_err());
        assert!(TaskRetention {
            days: None,
            keep_last: Some(MAX_KEEP_LAST + 1)
        }
        .validate()
        .is_err());
    }
}

/// One slice of the runs a policy expires: runs before `before`, of one task or of all tasks but
/// `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub task_id: Option<String>,
    pub except: Vec<String>,
    pub before: crate::alerting::ClosedKey,
}

/// The slices of runs the policies expire at `now_ms`: the global age limit over every task
/// without its own, each task's own age limit, and each task's `keep_last` boundary. Slices may
/// overlap (a run both old and beyond the count); deleting it once is enough, and a preview
/// counts it in each (an upper bound, said so in the API).
pub async fn expiries(
    store: &dyn crate::store::Store,
    policy: &RetentionPolicy,
    now_ms: i64,
) -> crate::store::StoreResult<Vec<Expiry>> {
    let age = |days: u32| crate::alerting::ClosedKey {
        closed_at: cutoff(now_ms, days),
        id: String::new(),
    };
    let tasks = store.task_retentions().await?;
    let own_days: Vec<String> = tasks
        .iter()
        .filter(|(_, r)| r.and_then(|r| r.days).is_some())
        .map(|(id, _)| id.clone())
        .collect();
    let mut out = vec![];
    if let Some(days) = policy.runs_days {
        out.push(Expiry {
            task_id: None,
            except: own_days,
            before: age(days),
        });
    }
    for (id, own) in &tasks {
        let effective = policy.for_task(own.as_ref());
        if let Some(days) = own.and_then(|r| r.days) {
            out.push(Expiry {
                task_id: Some(id.clone()),
                except: vec![],
                before: age(days),
            });
        }
        if let Some(n) = effective.keep_last {
            if let Some(boundary) = store.keep_last_boundary(id, n).await? {
                out.push(Expiry {
                    task_id: Some(id.clone()),
                    except: vec![],
                    before: boundary,
                });
            }
        }
    }
    Ok(out)
}
