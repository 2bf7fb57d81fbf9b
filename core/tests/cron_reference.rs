//! Our cron reading proven against an independent one: Python's `croniter`.
//!
//! Thousands of seeded random expressions (5 and 6 fields, names, ranges, steps, lists, both day
//! fields, `L` and `#`) in five zones — three with DST, one of them Lord Howe's half-hour shift — from starts
//! biased towards DST changes and leap days. Every case is written to one JSON file and one
//! `python3` process computes croniter's next fire times for all of them, so the comparison
//! takes seconds. `python3` with `croniter` must be installed (`ops/test.sh` installs it); the
//! test fails, naming what is missing, when it is not.
//!
//! Where croniter and we differ on purpose, the comparison applies our documented rule (see
//! `antcode_core::schedule`) to croniter's answer, and says so below:
//! * Day-of-month and day-of-week: Vixie cron treats a field starting with `*` (`*/2`) as
//!   unrestricted for the either-matches rule; croniter only a bare `*`. Each case passes
//!   croniter `day_or` as Vixie decides it.
//! * A repeated wall time (clocks go back) fires once, at its first occurrence; croniter fires
//!   both. Its second occurrences are dropped.
//! * croniter reads a one-value range such as `20-20` or `7-7` as the whole field (a bug, not a
//!   convention): the generator writes ranges of two values or more.
//! * A skipped wall time (clocks go forward) fires once at the end of the gap, at second 0.
//!   croniter does so only when the hour field is fixed (Vixie cron's rule for "fixed-time
//!   jobs"; it skips an hourly job's missing run) and keeps a 6-field expression's seconds
//!   there. Fires in the minute after a gap's end are left out on both sides; the unit tests of
//!   `schedule` check ours there by hand.

use std::io::Write;
use std::str::FromStr;

use antcode_core::model::Schedule;
use antcode_core::schedule::preview;
use chrono::{Offset, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ZONES: [&str; 5] = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Shanghai",
];
const CASES: usize = 3000;
const FIRES: usize = 6;

const CRONITER: &str = r#"
import json, sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from croniter import croniter
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    start = datetime.fromtimestamp(c["start_ms"] / 1000, tz=ZoneInfo(c["zone"]))
    try:
        it = croniter(c["expr"], start, day_or=c["day_or"], second_at_beginning=c["six"])
        fires = [int(it.get_next(datetime).timestamp() * 1000) for _ in range(c["n"])]
        out.append({"fires": fires})
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
json.dump(out, open(sys.argv[2], "w"))
"#;

/// One random field: `*`, `N`, `A-B`, `*/k`, `N/k`, `A-B/k`, or a list of two or three.
fn item(rng: &mut StdRng, lo: u32, hi: u32, names: &[&str]) -> String {
    let value = |rng: &mut StdRng, v: u32| -> String {
        if !names.is_empty() && rng.gen_bool(0.3) {
            let name = names[(v - lo) as usize % names.len()];
            // Names are case-insensitive.
            match rng.gen_range(0..3) {
                0 => name.to_string(),
                1 => name.to_ascii_lowercase(),
                _ => name[..1].to_string() + &name[1..].to_ascii_lowercase(),
            }
        } else {
            v.to_string()
        }
    };
    let span = hi - lo + 1;
    match rng.gen_range(0..6) {
        0 => "*".into(),
        1 => {
            let v = rng.gen_range(lo..=hi);
            value(rng, v)
        }
        // croniter reads a one-value range (`20-20`) as the whole field: ranges here have two.
        2 => {
            let a = rng.gen_range(lo..hi);
            let b = rng.gen_range(a + 1..=hi);
            format!("{}-{}", value(rng, a), value(rng, b))
        }
        3 => format!("*/{}", rng.gen_range(2..=span.min(15))),
        4 => {
            let a = rng.gen_range(lo..=hi);
            format!("{a}/{}", rng.gen_range(2..=span.min(15)))
        }
        _ => {
            let a = rng.gen_range(lo..hi);
            let b = rng.gen_range(a + 1..=hi);
            format!("{a}-{b}/{}", rng.gen_range(2..=span.min(10)))
        }
    }
}

fn field(rng: &mut StdRng, lo: u32, hi: u32, names: &[&str], star: f64) -> String {
    if rng.gen_bool(star) {
        return "*".into();
    }
    let n = if rng.gen_bool(0.25) {
        rng.gen_range(2..=3)
    } else {
        1
    };
    let items: Vec<String> = (0..n).map(|_| item(rng, lo, hi, names)).collect();
    // `*` in a list is every value anyway; croniter rejects some such lists.
    if n > 1 && items.iter().any(|i| i.starts_with('*')) {
        return items.into_iter().find(|i| i.starts_with('*')).unwrap();
    }
    items.join(",")
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn weekday_field(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.15) {
        // 7 is Sunday: alone, ending a range, or in a list.
        return match rng.gen_range(0..3) {
            0 => "7".into(),
            1 => format!("{}-7", rng.gen_range(0..=6)),
            _ => format!("{},7", rng.gen_range(1..=6)),
        };
    }
    field(rng, 0, 6, &DAYS, 0.45)
}

fn expression(rng: &mut StdRng) -> (String, bool) {
    let six = rng.gen_bool(0.25);
    let mut fields = vec![];
    if six {
        fields.push(field(rng, 0, 59, &[], 0.2));
    }
    fields.push(field(rng, 0, 59, &[], 0.15));
    fields.push(field(rng, 0, 23, &[], 0.3));
    // Days 28–31 often, for month ends and leap days.
    let dom = if rng.gen_bool(0.15) {
        rng.gen_range(28..=31).to_string()
    } else if rng.gen_bool(0.06) {
        // The last day of the month, alone or in a list.
        ["L", "1,L", "15,L"][rng.gen_range(0..3)].to_string()
    } else {
        field(rng, 1, 31, &[], 0.55)
    };
    let month = if rng.gen_bool(0.05) {
        "2".into()
    } else {
        field(rng, 1, 12, &MONTHS, 0.75)
    };
    // The k-th or the last weekday of the month, only with an unrestricted day-of-month:
    // croniter finds no date for `1 * 5#3` (either day field would do).
    let dow = if dom == "*" && rng.gen_bool(0.1) {
        let day = rng.gen_range(0..=7);
        match rng.gen_range(0..3) {
            0 => format!("{day}#{}", rng.gen_range(1..=5)),
            1 => format!("L{day}"),
            _ => format!("{}#{},{}#5", day % 7, rng.gen_range(1..=2), (day + 3) % 7),
        }
    } else {
        weekday_field(rng)
    };
    fields.push(dom);
    fields.push(month);
    fields.push(dow);
    (fields.join(" "), six)
}

/// `tz`'s offset from UTC at `t`, in seconds.
fn offset(tz: Tz, t: i64) -> i32 {
    Utc.timestamp_millis_opt(t)
        .unwrap()
        .with_timezone(&tz)
        .offset()
        .fix()
        .local_minus_utc()
}

/// Real instants at which `tz` changes its offset, in the given years.
fn transitions(tz: Tz, years: &[i32]) -> Vec<i64> {
    let offset = |t: i64| offset(tz, t);
    let mut out = vec![];
    for year in years {
        let start = Utc
            .with_ymd_and_hms(*year, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let mut t = start;
        while t < start + 366 * 86_400_000 {
            if offset(t) != offset(t + 900_000) {
                out.push(t + 900_000);
            }
            t += 900_000;
        }
    }
    out
}

fn start(rng: &mut StdRng, tz: Tz, changes: &[i64]) -> i64 {
    let second = |t: i64| t.div_euclid(1000) * 1000;
    match rng.gen_range(0..10) {
        // Near a DST change.
        0..=4 if !changes.is_empty() => second(
            changes[rng.gen_range(0..changes.len())] + rng.gen_range(-6 * 3_600_000..3 * 3_600_000),
        ),
        // Late February of a leap year or the years around one.
        5 | 6 => {
            let year = rng.gen_range(2024..=2029);
            let day = rng.gen_range(20..=28);
            tz.with_ymd_and_hms(year, 2, day, 0, 0, 0)
                .earliest()
                .unwrap()
                .timestamp_millis()
                + rng.gen_range(0..86_400) * 1000
        }
        // Anywhere in 2024–2030, on a whole minute or not.
        _ => {
            let t = Utc
                .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
                + rng.gen_range(0..7 * 365 * 86_400) * 1000;
            if rng.gen_bool(0.5) {
                t.div_euclid(60_000) * 60_000
            } else {
                t
            }
        }
    }
}

/// The end of the gap `t` falls in the first minute after, if any (offsets change on whole
/// minutes, so the minute's start is that end).
fn after_gap(tz: Tz, t: i64) -> Option<i64> {
    let minute = t.div_euclid(60_000) * 60_000;
    let offset = |t: i64| offset(tz, t);
    // Clocks went forward at `minute`: the offset grew.
    (offset(minute) > offset(minute - 1)).then_some(minute)
}

/// Whether `t`'s wall time happened before, at an earlier real instant.
fn repeated(tz: Tz, t: i64) -> bool {
    let wall = Utc
        .timestamp_millis_opt(t)
        .unwrap()
        .with_timezone(&tz)
        .naive_local();
    tz.from_local_datetime(&wall)
        .earliest()
        .is_some_and(|first| first.timestamp_millis() < t)
}

/// Our rules applied to a list of fires: second occurrences dropped (on croniter's side only),
/// fires in the minute after a gap's end left out.
fn normalise(tz: Tz, fires: &[i64], drop_repeats: bool) -> Vec<i64> {
    fires
        .iter()
        .filter(|t| !(drop_repeats && repeated(tz, **t)))
        .filter(|t| after_gap(tz, **t).is_none())
        .copied()
        .collect()
}

fn run_croniter(cases: &[Value]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    let output = dir.path().join("fires.json");
    let script = dir.path().join("reference.py");
    std::fs::write(&input, serde_json::to_vec(cases).unwrap()).unwrap();
    std::fs::File::create(&script)
        .unwrap()
        .write_all(CRONITER.as_bytes())
        .unwrap();
    let result = std::process::Command::new("python3")
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): the cron reference test needs python3 with croniter (pip install croniter; ops/test.sh installs it)")
        });
    assert!(
        result.status.success(),
        "the croniter reference run failed (is croniter installed? pip install croniter; \
         ops/test.sh installs it):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap()
}

fn rfc(t: i64, tz: Tz) -> String {
    Utc.timestamp_millis_opt(t)
        .unwrap()
        .with_timezone(&tz)
        .format("%a %Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

#[test]
fn next_fire_times_agree_with_croniter() {
    let mut rng = StdRng::seed_from_u64(0xc0ff_ee21);
    let years = [2024, 2025, 2026, 2027, 2028, 2029, 2030];
    let changes: Vec<Vec<i64>> = ZONES
        .iter()
        .map(|z| transitions(Tz::from_str(z).unwrap(), &years))
        .collect();
    let mut cases = vec![];
    let mut ours = vec![];
    for i in 0..CASES {
        let zone_index = i % ZONES.len();
        let zone = ZONES[zone_index];
        let tz = Tz::from_str(zone).unwrap();
        let (expr, six) = expression(&mut rng);
        let start_ms = start(&mut rng, tz, &changes[zone_index]);
        let fields: Vec<&str> = expr.split(' ').collect();
        let (dom, dow) = (fields[fields.len() - 3], fields[fields.len() - 1]);
        let day_or = !dom.starts_with('*') && !dow.starts_with('*');
        let schedule = Schedule::Cron {
            cron: expr.clone(),
            timezone: zone.into(),
        };
        let fires = preview(&schedule, start_ms, 0, FIRES)
            .unwrap_or_else(|e| panic!("we refuse {expr:?}: {e}"));
        ours.push(fires);
        cases.push(
            json!({"expr": expr, "zone": zone, "start_ms": start_ms, "six": six,
            "day_or": day_or, "n": FIRES}),
        );
    }
    let theirs = run_croniter(&cases);
    assert_eq!(theirs.len(), cases.len());
    let mut compared = 0;
    let mut fires_compared = 0;
    let mut never = 0;
    let mut gap_only = 0;
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        let expr = case["expr"].as_str().unwrap();
        let tz = Tz::from_str(case["zone"].as_str().unwrap()).unwrap();
        let start_ms = case["start_ms"].as_i64().unwrap();
        let context = format!(
            "cron {expr:?} in {} from {}",
            case["zone"].as_str().unwrap(),
            rfc(start_ms, tz)
        );
        let Some(theirs) = theirs["fires"].as_array() else {
            // croniter gives up after 50 years without a match; we look 400 years ahead.
            let error = theirs["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("CroniterBadDateError"),
                "{context}: croniter: {error}"
            );
            let fifty_years = start_ms + 50 * 366 * 86_400_000;
            assert!(
                ours.first().is_none_or(|t| *t > fifty_years),
                "{context}: croniter finds nothing in 50 years, we fire at {}",
                rfc(ours[0], tz)
            );
            never += 1;
            continue;
        };
        let theirs: Vec<i64> = theirs.iter().map(|t| t.as_i64().unwrap()).collect();
        let ours = normalise(tz, ours, false);
        let theirs = normalise(tz, &theirs, true);
        // Both lists up to the earlier of their last fires (normalising can shorten either).
        let (Some(a), Some(b)) = (ours.last(), theirs.last()) else {
            // Every fire of one side was in the minute after a gap's end.
            gap_only += 1;
            continue;
        };
        let horizon = *a.min(b);
        let ours: Vec<String> = ours
            .iter()
            .filter(|t| **t <= horizon)
            .map(|t| rfc(*t, tz))
            .collect();
        let theirs: Vec<String> = theirs
            .iter()
            .filter(|t| **t <= horizon)
            .map(|t| rfc(*t, tz))
            .collect();
        assert_eq!(ours, theirs, "{context}: ours left, croniter right");
        compared += 1;
        fires_compared += ours.len();
    }
    eprintln!(
        "{compared} expressions and {fires_compared} fire times agree with croniter; \
         {never} never fire within 50 years on either side; {gap_only} fire only at a gap's end"
    );
    assert!(
        gap_only < CASES / 100,
        "too many cases left out: {gap_only}"
    );
    let extended = cases
        .iter()
        .filter(|c| {
            // The day fields only (month names may hold an L).
            let fields: Vec<&str> = c["expr"].as_str().unwrap().split(' ').collect();
            let n = fields.len();
            fields[n - 3].contains('L') || fields[n - 1].contains(['L', '#'])
        })
        .count();
    eprintln!("{extended} of them use `L` or `#`");
    assert!(
        extended > CASES / 50,
        "too few `L` and `#` cases: {extended}"
    );
    assert!(
        compared > CASES * 9 / 10,
        "too few cases compared: {compared}"
    );
}
