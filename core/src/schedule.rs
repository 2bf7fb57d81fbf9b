//! Schedule arithmetic: validating a schedule, computing its fire times, and describing it.
//!
//! Shared by control (validation, the "next 5 fire times" preview and the description) and the
//! scheduler (advancing `next_fire_at`), so both agree on every instant.
//!
//! # Cron
//!
//! Our own parser (`cron.rs`), with Vixie cron's semantics (crontab(5)):
//! * 5 fields, `minute hour day-of-month month day-of-week`, or 6 with a leading `second`
//!   (0-59); without one a minute fires at its second 0. Or one of `@yearly` (= `@annually`,
//!   `0 0 1 1 *`), `@monthly`, `@weekly` (Sundays), `@daily` (= `@midnight`), `@hourly`.
//! * Each field is a comma list of `*`, `N`, `A-B`, each optionally with `/step`; `N/step` is
//!   `N-max/step`. Ranges never run backwards (`22-2` is refused).
//! * Months 1-12 or `JAN`-`DEC`; weekdays 0-7 or `SUN`-`SAT`, 0 and 7 both Sunday; names are
//!   case-insensitive. In day-of-week, `*` and `N/step` stop at 6 (Saturday); 7 counts only
//!   when written.
//! * When day-of-month and day-of-week are both restricted (neither field starts with `*`), a
//!   day matching either fires: `0 0 1,15 * 3` is the 1st, the 15th and every Wednesday. When
//!   either starts with `*` a day must match both: `0 0 */2 * 1` is odd days that are Mondays.
//! * Extensions, as in Quartz and croniter: `L` in day-of-month is the month's last day;
//!   `N#k` in day-of-week the month's k-th weekday N (1-5: `5#3` is the third Friday), `NL`
//!   (or croniter's `LN`) its last weekday N. They count as restricted day fields.
//! * Not supported: Quartz's `?`, `W`, `L-n` and a year field. Errors quote the expression as
//!   written and name the field; expressions are at most 256 bytes.
//! * [`from_quartz`] rewrites an expression stored for the old reading so it means what its
//!   owner meant: the 6-field Quartz form keeps its days (numbers shifted), the 5-field crontab
//!   form keeps its numbers (read as crontab reads them now); migration 8 applies it.
//!
//! A cron schedule is matched on wall-clock time in its IANA zone, then each matching wall time
//! is placed on the real time line (see `next_cron`): a wall time that happens twice (clocks
//! go back) fires once, at its first occurrence; one that never happens (clocks go forward)
//! fires once, at the end of the gap, at second 0 — a daily 02:30 still runs on the day of the
//! change, at 03:00. Python's croniter differs on purpose: it fires a repeated wall time at both
//! occurrences, and a skipped one only when the hour field is fixed (Vixie cron's rule for
//! fixed-time jobs), keeping a 6-field expression's seconds (03:00:15 for 02:30:15).
//! `core/tests/cron_reference.rs` compares the two everywhere else.

use chrono::{Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

use crate::model::Schedule;
use crate::time::parse_rfc3339;

mod cron;
pub use cron::{from_quartz, reads_differently, Cron, CronError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("schedule.cron: {0}")]
    Cron(String),
    #[error("schedule.timezone: unknown time zone {0:?}")]
    TimeZone(String),
    #[error("schedule.at: not an RFC 3339 time: {0:?}")]
    At(String),
    #[error("schedule.every_s: must be between 1 and 31536000")]
    Every,
    #[error("schedule.start: not an RFC 3339 time: {0:?}")]
    Start(String),
    #[error("schedule.end: {0}")]
    End(String),
}

/// An interval's optional bounds in epoch ms, checked.
fn interval_bounds(
    start: &Option<String>,
    end: &Option<String>,
) -> Result<(Option<i64>, Option<i64>), ScheduleError> {
    let start = match start {
        None => None,
        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| ScheduleError::Start(s.clone()))?),
    };
    let end = match end {
        None => None,
        Some(e) => Some(
            parse_rfc3339(e)
                .ok_or_else(|| ScheduleError::End(format!("not an RFC 3339 time: {e:?}")))?,
        ),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(ScheduleError::End(
                "must not be before schedule.start".into(),
            ));
        }
    }
    Ok((start, end))
}

/// A schedule checked and parsed once, to compute many fire times from: the scheduler plans
/// thousands of fires a second, and parsing a cron expression costs more than finding its next
/// match.
#[derive(Debug, Clone)]
pub enum Compiled {
    Once(i64),
    Interval {
        every_ms: i64,
        start: Option<i64>,
        end: Option<i64>,
    },
    Cron(Box<Cron>, Tz),
}

impl Compiled {
    /// Checks `s`; the error names the offending field.
    pub fn new(s: &Schedule) -> Result<Compiled, ScheduleError> {
        Ok(match s {
            Schedule::Once { at } => {
                Compiled::Once(parse_rfc3339(at).ok_or_else(|| ScheduleError::At(at.clone()))?)
            }
            Schedule::Interval {
                every_s,
                start,
                end,
            } => {
                if !(1..=31_536_000).contains(every_s) {
                    return Err(ScheduleError::Every);
                }
                let (start, end) = interval_bounds(start, end)?;
                Compiled::Interval {
                    every_ms: *every_s as i64 * 1000,
                    start,
                    end,
                }
            }
            Schedule::Cron { cron, timezone } => {
                let tz = Tz::from_str(timezone)
                    .map_err(|_| ScheduleError::TimeZone(timezone.clone()))?;
                let parsed = Cron::parse(cron).map_err(|e| ScheduleError::Cron(e.0))?;
                Compiled::Cron(Box::new(parsed), tz)
            }
        })
    }

    /// See [`next_after`].
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        match self {
            Compiled::Once(at) => Some(*at).filter(|t| *t > after_ms),
            Compiled::Interval {
                every_ms,
                start,
                end,
            } => {
                let anchor_ms = start.unwrap_or(anchor_ms);
                let elapsed = (after_ms - anchor_ms).max(-every_ms);
                Some(anchor_ms + (elapsed.div_euclid(*every_ms) + 1) * every_ms)
                    .filter(|t| end.is_none_or(|end| *t <= end))
            }
            Compiled::Cron(schedule, tz) => next_cron(schedule, *tz, after_ms),
        }
    }

    /// False for a time outside the schedule's bounds (an interval before its `start` or after
    /// its `end`): the scheduler drops such a pending fire instead of firing it.
    pub fn within_bounds(&self, at_ms: i64) -> bool {
        match self {
            Compiled::Interval { start, end, .. } => {
                start.is_none_or(|s| at_ms >= s) && end.is_none_or(|e| at_ms <= e)
            }
            _ => true,
        }
    }
}

/// Checks a schedule; the error names the offending field.
pub fn validate(s: &Schedule) -> Result<(), ScheduleError> {
    Compiled::new(s).map(|_| ())
}

/// The first fire time strictly after `after_ms`, or `None` when the schedule is exhausted.
/// `anchor_ms` is when an interval schedule without a `start` started counting (its task's
/// creation); with a `start`, fires are `start + k·every_s` and none is after its `end`.
pub fn next_after(
    s: &Schedule,
    after_ms: i64,
    anchor_ms: i64,
) -> Result<Option<i64>, ScheduleError> {
    Ok(Compiled::new(s)?.next_after(after_ms, anchor_ms))
}

/// Cron is matched against wall-clock time in `tz`, then each matching wall time is placed on
/// the real time line:
/// * a wall time that happens twice (clocks go back) fires once, at its first occurrence;
/// * a wall time that never happens (clocks go forward) fires once, when the gap ends — a daily
///   02:30 job still runs on the day of the change, at 03:00.
fn next_cron(schedule: &Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let after = Utc.timestamp_millis_opt(after_ms).single()?;
    // Start three hours of wall time early when the zone's offset changed in the last three
    // hours: the wall clock can then run behind the real one by the size of the DST shift (at
    // most two hours anywhere), and candidates before `after` are filtered out below. Without a
    // change the wall clock is in step, and looking back would only walk up to 180 per-minute
    // candidates for nothing (most of a fire's cost with 100,000 schedules).
    let local = after.with_timezone(&tz);
    let earlier = (after - chrono::Duration::hours(3)).with_timezone(&tz);
    let lookback = if earlier.offset().fix() == local.offset().fix() {
        chrono::Duration::zero()
    } else {
        chrono::Duration::hours(3)
    };
    let wall = local.naive_local() - lookback;
    std::iter::successors(schedule.next_after(wall), |w| schedule.next_after(*w))
        .take(200_000)
        .filter_map(|candidate| place_wall_time(tz, candidate))
        .find(|t| *t > after_ms)
}

fn place_wall_time(tz: Tz, wall: chrono::NaiveDateTime) -> Option<i64> {
    use chrono::offset::LocalResult;
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
        LocalResult::None => {
            // Inside a gap: the fire is at the gap's end, the first wall time that exists. Gaps
            // start and end on whole minutes everywhere in the tz database, so walking whole
            // minutes from the wall time with its seconds dropped lands exactly on that end
            // (keeping the seconds would fire a 6-field 02:30:15 at 03:00:15, not 03:00:00).
            use chrono::Timelike;
            let minute = wall.with_second(0)?.with_nanosecond(0)?;
            (1..=180)
                .find_map(|m| {
                    tz.from_local_datetime(&(minute + chrono::Duration::minutes(m)))
                        .earliest()
                })
                .map(|t| t.timestamp_millis())
        }
    }
}

/// A plain-language description of the schedule, for example "At 08:30, Monday through
/// Friday, Asia/Shanghai".
pub fn describe(s: &Schedule) -> Result<String, ScheduleError> {
    Compiled::new(s)?;
    Ok(match s {
        Schedule::Once { at } => format!("Once, at {at}"),
        Schedule::Interval {
            every_s,
            start,
            end,
        } => {
            let unit = [
                (86_400, "day"),
                (3_600, "hour"),
                (60, "minute"),
                (1, "second"),
            ]
            .into_iter()
            .find(|(n, _)| every_s % n == 0)
            .unwrap_or((1, "second"));
            let mut text = match every_s / unit.0 {
                1 => format!("Every {}", unit.1),
                n => format!("Every {n} {}s", unit.1),
            };
            if let Some(start) = start {
                text.push_str(&format!(", from {start}"));
            }
            if let Some(end) = end {
                text.push_str(&format!(", until {end}"));
            }
            text
        }
        Schedule::Cron { cron, timezone } => {
            let parsed = Cron::parse(cron).map_err(|e| ScheduleError::Cron(e.0))?;
            format!("{}, {timezone}", parsed.describe())
        }
    })
}

/// The next `n` fire times after `after_ms` (the API's preview).
pub fn preview(
    s: &Schedule,
    after_ms: i64,
    anchor_ms: i64,
    n: usize,
) -> Result<Vec<i64>, ScheduleError> {
    let compiled = Compiled::new(s)?;
    let mut out = Vec::with_capacity(n);
    let mut t = after_ms;
    while out.len() < n {
        match compiled.next_after(t, anchor_ms) {
            Some(next) => {
                out.push(next);
                t = next;
            }
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::to_rfc3339;

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule::Cron {
            cron: expr.into(),
            timezone: tz.into(),
        }
    }

    #[test]
    fn invalid_schedules_name_their_field() {
        assert!(matches!(
            validate(&cron("61 * * * *", "UTC")),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            validate(&cron("* * *", "UTC")),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            validate(&cron("* * * * *", "Mars/Base")),
            Err(ScheduleError::TimeZone(_))
        ));
        assert!(matches!(
            validate(&Schedule::Once {
                at: "tomorrow".into()
            }),
            Err(ScheduleError::At(_))
        ));
        assert_eq!(
            validate(&Schedule::Interval {
                every_s: 0,
                start: None,
                end: None
            }),
            Err(ScheduleError::Every)
        );
    }

    #[test]
    fn cron_is_evaluated_in_its_zone() {
        let after = parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        let next = next_after(&cron("0 9 * * *", "Asia/Shanghai"), after, 0)
            .unwrap()
            .unwrap();
        assert_eq!(to_rfc3339(next), "2026-01-10T01:00:00.000Z");
    }

    #[test]
    fn five_and_six_field_cron() {
        let after = parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        let five = preview(&cron("*/15 * * * *", "UTC"), after, 0, 2).unwrap();
        assert_eq!(
            five.iter().map(|t| to_rfc3339(*t)).collect::<Vec<_>>(),
            ["2026-01-10T00:15:00.000Z", "2026-01-10T00:30:00.000Z"]
        );
        let six = next_after(&cron("30 * * * * *", "UTC"), after, 0)
            .unwrap()
            .unwrap();
        assert_eq!(to_rfc3339(six), "2026-01-10T00:00:30.000Z");
    }

    fn every(every_s: u64, start: Option<&str>, end: Option<&str>) -> Schedule {
        Schedule::Interval {
            every_s,
            start: start.map(str::to_string),
            end: end.map(str::to_string),
        }
    }

    #[test]
    fn interval_bounds_are_validated_by_field() {
        assert_eq!(
            validate(&every(60, Some("soon"), None)),
            Err(ScheduleError::Start("soon".into()))
        );
        let bad_end = validate(&every(60, None, Some("later"))).unwrap_err();
        assert!(
            bad_end.to_string().starts_with("schedule.end:"),
            "{bad_end}"
        );
        let reversed = validate(&every(
            60,
            Some("2026-01-10T00:00:00Z"),
            Some("2026-01-09T00:00:00Z"),
        ))
        .unwrap_err();
        assert!(
            reversed.to_string().starts_with("schedule.end:"),
            "{reversed}"
        );
        validate(&every(
            60,
            Some("2026-01-10T00:00:00Z"),
            Some("2026-01-10T00:00:00Z"),
        ))
        .expect("one fire at start = end");
    }

    #[test]
    fn interval_fires_from_start_until_end() {
        let s = every(
            600,
            Some("2026-01-10T00:05:00Z"),
            Some("2026-01-10T00:30:00Z"),
        );
        // From before the start: the start itself, then every ten minutes, none after the end,
        // whatever the task's creation (the anchor) was.
        assert_eq!(
            wall(&s, "2026-01-01T00:00:00Z", 5),
            [
                "2026-01-10T00:05:00.000Z",
                "2026-01-10T00:15:00.000Z",
                "2026-01-10T00:25:00.000Z"
            ]
        );
        // From inside the window: the grid still counts from the start.
        assert_eq!(
            wall(&s, "2026-01-10T00:16:00Z", 5),
            ["2026-01-10T00:25:00.000Z"]
        );
        assert_eq!(wall(&s, "2026-01-10T00:25:00Z", 5), Vec::<String>::new());
        let within = |t: &str| {
            Compiled::new(&s)
                .unwrap()
                .within_bounds(parse_rfc3339(t).unwrap())
        };
        assert!(within("2026-01-10T00:05:00Z"));
        assert!(within("2026-01-10T00:30:00Z"));
        assert!(!within("2026-01-10T00:04:59Z"));
        assert!(!within("2026-01-10T00:35:00Z"));
        // Open-ended on either side.
        let from = every(60, Some("2026-01-10T00:00:00Z"), None);
        assert_eq!(
            wall(&from, "2026-01-10T10:00:30Z", 1),
            ["2026-01-10T10:01:00.000Z"]
        );
        let until = every(60, None, Some("1970-01-01T00:02:00Z"));
        assert_eq!(preview(&until, 0, 0, 5).unwrap(), [60_000, 120_000]);
    }

    #[test]
    fn interval_counts_from_its_anchor_and_once_fires_once() {
        let s = every(10, None, None);
        assert_eq!(next_after(&s, 1_000, 0).unwrap(), Some(10_000));
        assert_eq!(next_after(&s, 10_000, 0).unwrap(), Some(20_000));
        assert_eq!(next_after(&s, -5_000, 0).unwrap(), Some(0));
        let once = Schedule::Once {
            at: "2026-01-10T00:00:00Z".into(),
        };
        let at = parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        assert_eq!(next_after(&once, at - 1, 0).unwrap(), Some(at));
        assert_eq!(next_after(&once, at, 0).unwrap(), None);
    }

    fn wall(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        preview(s, parse_rfc3339(from).unwrap(), 0, n)
            .unwrap()
            .into_iter()
            .map(to_rfc3339)
            .collect()
    }

    #[test]
    fn spring_forward_runs_a_skipped_wall_time_once_when_the_gap_ends() {
        // 2026-03-08 02:00 EST → 03:00 EDT in New York: 02:30 does not exist that day.
        let daily = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            wall(&daily, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:00:00.000Z",
                "2026-03-09T06:30:00.000Z",
                "2026-03-10T06:30:00.000Z"
            ]
        );
        // With seconds too: 02:30:15 fires at the gap's end, 03:00:00, not at 03:00:15.
        let with_seconds = cron("15 30 2 * * *", "America/New_York");
        assert_eq!(
            wall(&with_seconds, "2026-03-07T12:00:00Z", 1),
            ["2026-03-08T07:00:00.000Z"]
        );
        let half_hourly = cron("*/30 * * * *", "America/New_York");
        assert_eq!(
            wall(&half_hourly, "2026-03-08T06:15:00Z", 3),
            [
                "2026-03-08T06:30:00.000Z",
                "2026-03-08T07:00:00.000Z",
                "2026-03-08T07:30:00.000Z"
            ]
        );
    }

    #[test]
    fn every_second_cron_is_found() {
        let s = cron("* * * * * *", "Europe/Berlin");
        assert_eq!(
            wall(&s, "2026-01-10T00:00:00Z", 2),
            ["2026-01-10T00:00:01.000Z", "2026-01-10T00:00:02.000Z"]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_wall_time_once() {
        // 2026-11-01 02:00 EDT → 01:00 EST: 01:30 happens twice.
        let daily = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            wall(&daily, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]
        );
        // Asking from inside the repeated hour does not fire 01:30 a second time.
        assert_eq!(
            wall(&daily, "2026-11-01T06:10:00Z", 1),
            ["2026-11-02T06:30:00.000Z"]
        );
    }

    /// The cron fields the property test draws: each a set of allowed values, rendered to text.
    struct Field {
        text: String,
        allowed: Vec<bool>,
    }

    fn field(rng: &mut impl rand::Rng, lo: u32, hi: u32, steps: &[u32]) -> Field {
        // Indexed by value; 32 slots so a day-of-month field covers days 29–31.
        let mut allowed = vec![false; (hi as usize + 1).max(32)];
        let text = match rng.gen_range(0..5) {
            0 => {
                // `*` is every value, including days 29–31 of a day-of-month field.
                allowed.iter_mut().for_each(|a| *a = true);
                "*".to_string()
            }
            1 => {
                let v = rng.gen_range(lo..=hi);
                allowed[v as usize] = true;
                v.to_string()
            }
            2 => {
                let k = steps[rng.gen_range(0..steps.len())];
                (lo..=hi)
                    .filter(|v| (v - lo).is_multiple_of(k))
                    .for_each(|v| allowed[v as usize] = true);
                format!("*/{k}")
            }
            3 => {
                let a = rng.gen_range(lo..=hi);
                let b = rng.gen_range(a..=hi);
                (a..=b).for_each(|v| allowed[v as usize] = true);
                format!("{a}-{b}")
            }
            _ => {
                let a = rng.gen_range(lo..=hi);
                let b = rng.gen_range(lo..=hi);
                allowed[a as usize] = true;
                allowed[b as usize] = true;
                format!("{a},{b}")
            }
        };
        Field { text, allowed }
    }

    /// The documented semantics, walked minute by minute over REAL time: a minute fires its
    /// matching seconds when its wall time matches and this is that wall time's first
    /// occurrence; a minute that ends a gap (the wall clock jumped forward) fires at its start
    /// if any skipped wall time matched. Offsets change on whole minutes, so within one minute
    /// the seconds field can be applied directly.
    fn brute_next(
        tz: Tz,
        secs: &[bool],
        mins: &[bool],
        hours: &[bool],
        days: &[bool],
        after_ms: i64,
        horizon_minutes: i64,
    ) -> Option<i64> {
        use chrono::{Datelike, Timelike};
        let matches = |w: chrono::NaiveDateTime| {
            mins[w.minute() as usize] && hours[w.hour() as usize] && days[w.day() as usize]
        };
        let wall = |t: i64| {
            Utc.timestamp_millis_opt(t)
                .unwrap()
                .with_timezone(&tz)
                .naive_local()
        };
        let start = after_ms.div_euclid(60_000) * 60_000;
        for i in 0..horizon_minutes {
            let t = start + i * 60_000;
            let w = wall(t);
            let mut fires = vec![];
            let first = tz
                .from_local_datetime(&w)
                .earliest()
                .unwrap()
                .timestamp_millis()
                == t;
            if first && matches(w) {
                fires.extend((0..60).filter(|s| secs[*s as usize]).map(|s| t + s * 1000));
            }
            let mut skipped = wall(t - 60_000) + chrono::Duration::minutes(1);
            while skipped < w {
                if matches(skipped) {
                    fires.push(t);
                }
                skipped += chrono::Duration::minutes(1);
            }
            if let Some(f) = fires.into_iter().filter(|f| *f > after_ms).min() {
                return Some(f);
            }
        }
        None
    }

    /// Real instants (UTC ms) in 2026 at which `tz` changes its offset.
    fn transitions(tz: Tz) -> Vec<i64> {
        let start = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let offset = |t: i64| {
            use chrono::Offset;
            Utc.timestamp_millis_opt(t)
                .unwrap()
                .with_timezone(&tz)
                .offset()
                .fix()
                .local_minus_utc()
        };
        (0..365 * 48)
            .map(|h| start + h * 1_800_000)
            .filter(|t| offset(*t) != offset(t - 1_800_000))
            .collect()
    }

    /// Where each matching wall time lands on the real time line around DST changes: the part
    /// of the rules the croniter comparison (`core/tests/cron_reference.rs`) leaves out. The
    /// calendar reading itself (weekdays, day fields) is proven against croniter there.
    #[test]
    fn dst_placement_matches_a_brute_force_walk() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c0de);
        let zones = [
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ];
        let year_start = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        for case in 0..400 {
            let zone = zones[case % zones.len()];
            let tz = Tz::from_str(zone).unwrap();
            let six = rng.gen_bool(0.3);
            let secs = if six {
                field(&mut rng, 0, 59, &[10, 15, 20, 30])
            } else {
                let mut allowed = vec![false; 60];
                allowed[0] = true;
                Field {
                    text: String::new(),
                    allowed,
                }
            };
            let mins = field(&mut rng, 0, 59, &[5, 10, 15, 20, 30]);
            let hours = field(&mut rng, 0, 23, &[2, 3, 6]);
            let days = if rng.gen_bool(0.15) {
                field(&mut rng, 1, 31, &[7, 10])
            } else {
                Field {
                    text: "*".into(),
                    allowed: vec![true; 32],
                }
            };
            let expr = format!(
                "{}{} {} {} * *",
                if six {
                    format!("{} ", secs.text)
                } else {
                    String::new()
                },
                mins.text,
                hours.text,
                days.text
            );
            // Most starts sit within a few hours of one of the zone's DST changes.
            let changes = transitions(tz);
            let after = if !changes.is_empty() && rng.gen_bool(0.8) {
                changes[rng.gen_range(0..changes.len())] + rng.gen_range(-4 * 3_600_000..3_600_000)
            } else {
                year_start + rng.gen_range(0..360 * 86_400_000i64)
            };
            let got = next_after(&cron(&expr, zone), after, 0).unwrap();
            let want = brute_next(
                tz,
                &secs.allowed,
                &mins.allowed,
                &hours.allowed,
                &days.allowed,
                after,
                40 * 24 * 60,
            );
            assert_eq!(
                got.map(to_rfc3339),
                want.map(to_rfc3339),
                "cron {expr:?} in {zone} after {}",
                to_rfc3339(after)
            );
        }
    }
}
