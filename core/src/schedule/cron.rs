//! Our cron grammar: parsing, matching wall-clock times, and describing an expression in words.
//!
//! The grammar is Vixie cron's (crontab(5)); see the module doc of `schedule` for the whole of it.
//! Every field is a bit set of the values it allows, so matching a time is a few bit tests and
//! finding the next match skips whole days, hours and minutes at once.
//!
//! Past 800 lines because of its tests (about a third of the file): the grammar's edge cases,
//! each next to the parser it checks.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// The longest cron expression accepted, in bytes.
pub const MAX_LEN: usize = 256;

/// How far ahead a next match is looked for: a Gregorian cycle, so an expression that matches
/// no day in it (February 30th) never matches.
const HORIZON_YEARS: i32 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Second => "second",
            Kind::Minute => "minute",
            Kind::Hour => "hour",
            Kind::DayOfMonth => "day-of-month",
            Kind::Month => "month",
            Kind::DayOfWeek => "day-of-week",
        }
    }

    /// The values a number may take (7 is accepted in day-of-week as Sunday).
    fn bounds(self) -> (u32, u32) {
        match self {
            Kind::Second | Kind::Minute => (0, 59),
            Kind::Hour => (0, 23),
            Kind::DayOfMonth => (1, 31),
            Kind::Month => (1, 12),
            Kind::DayOfWeek => (0, 7),
        }
    }

    /// The last value `*` and `N/step` run to: Saturday (6) in day-of-week, as croniter does.
    fn star_max(self) -> u32 {
        match self {
            Kind::DayOfWeek => 6,
            k => k.bounds().1,
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Month => &MONTHS,
            Kind::DayOfWeek => &DAYS,
            _ => &[],
        }
    }

    /// The first value of `names()`.
    fn first_named(self) -> u32 {
        match self {
            Kind::Month => 1,
            _ => 0,
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A parsed cron expression: the set of wall-clock times it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1–31.
    days: u32,
    /// Bits 1–12.
    months: u16,
    /// Bits 0–6, Sunday = 0.
    weekdays: u8,
    /// The extensions of the day fields.
    special: Special,
    /// crontab(5): when day-of-month and day-of-week both are restricted (neither starts with
    /// `*`), a day matching either is a match; otherwise a day must match both.
    day_or: bool,
    has_seconds: bool,
    /// For `describe`: whether each field was written starting with `*`.
    stars: [bool; 6],
}

/// The day-field extensions: `L` in day-of-month, `N#k` and `NL` in day-of-week.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Special {
    /// `L`: the month's last day.
    last_day: bool,
    /// `N#k`: per weekday, bit k for its k-th occurrence in the month (1-5).
    nth: [u8; 7],
    /// `NL` (or `LN`): bit N for the month's last weekday N.
    last_weekday: u8,
}

impl Special {
    fn has_weekdays(&self) -> bool {
        self.last_weekday != 0 || self.nth.iter().any(|n| *n != 0)
    }
}

/// Why an expression was refused; the message quotes the expression as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(pub String);

impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Cron {
    type Err = CronError;

    fn from_str(expr: &str) -> Result<Cron, CronError> {
        Cron::parse(expr)
    }
}

impl Cron {
    /// Parses a 5-field (`minute hour day-of-month month day-of-week`) or 6-field (a leading
    /// `second`) expression, or one of the `@` shortcuts.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        if expr.len() > MAX_LEN {
            return Err(CronError(format!(
                "a cron expression has at most {MAX_LEN} characters, this one has {}",
                expr.len()
            )));
        }
        let trimmed = expr.trim();
        if let Some(word) = trimmed.strip_prefix('@') {
            let fields = match word.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(CronError(format!(
                        "`{trimmed}` is not a cron shortcut: use @yearly, @annually, @monthly, \
                         @weekly, @daily, @midnight or @hourly"
                    )))
                }
            };
            return Cron::parse(fields);
        }
        let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
        let (kinds, has_seconds): (&[Kind], bool) = match fields.len() {
            5 => (
                &[
                    Kind::Minute,
                    Kind::Hour,
                    Kind::DayOfMonth,
                    Kind::Month,
                    Kind::DayOfWeek,
                ],
                false,
            ),
            6 => (
                &[
                    Kind::Second,
                    Kind::Minute,
                    Kind::Hour,
                    Kind::DayOfMonth,
                    Kind::Month,
                    Kind::DayOfWeek,
                ],
                true,
            ),
            n => {
                return Err(CronError(format!(
                    "`{trimmed}` has {n} fields: a cron expression has 5 (minute hour \
                     day-of-month month day-of-week) or 6 (a leading second)"
                )))
            }
        };
        let mut sets = [0u64; 6];
        let mut stars = [true; 6];
        let mut special = Special::default();
        // Without a seconds field a minute matches at its second 0.
        let offset = if has_seconds { 0 } else { 1 };
        sets[0] = 1;
        for (i, (kind, text)) in kinds.iter().zip(&fields).enumerate() {
            sets[i + offset] = parse_field(*kind, text, trimmed, &mut special)?;
            stars[i + offset] = text.starts_with('*');
        }
        let weekdays = sets[5];
        // 7 is Sunday too.
        let weekdays = ((weekdays | (weekdays >> 7)) & 0x7f) as u8;
        Ok(Cron {
            seconds: sets[0],
            minutes: sets[1],
            hours: sets[2] as u32,
            days: sets[3] as u32,
            months: sets[4] as u16,
            weekdays,
            special,
            day_or: !stars[3] && !stars[5],
            has_seconds,
            stars,
        })
    }

    /// Whether both day fields are restricted, so a day matching either is a match.
    pub fn either_day_matches(&self) -> bool {
        self.day_or
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let weekday = date.weekday().num_days_from_sunday();
        let mut dom = self.days & (1 << date.day()) != 0;
        let mut dow = self.weekdays & (1 << weekday) != 0;
        if self.special != Special::default() {
            let last = last_day_of_month(date);
            dom |= self.special.last_day && date.day() == last;
            let nth = (date.day() - 1) / 7 + 1;
            dow |= self.special.nth[weekday as usize] & (1 << nth) != 0;
            dow |= self.special.last_weekday & (1 << weekday) != 0 && date.day() + 7 > last;
        }
        if self.day_or {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// Whether the wall-clock time `t` (whole seconds) is a match.
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        self.day_matches(t.date())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
            && self.seconds & (1 << t.second()) != 0
    }

    /// The first matching wall-clock time strictly after `t`, or `None` if there is none in the
    /// next 400 years.
    pub fn next_after(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let t = t.with_nanosecond(0)?;
        // Within `t`'s own day first, from the second after it.
        if self.day_matches(t.date()) {
            if let Some(time) = self.time_from(t.hour(), t.minute(), t.second() + 1) {
                return Some(t.date().and_time(time));
            }
        }
        let first = self.time_from(0, 0, 0)?;
        let last = NaiveDate::from_ymd_opt(t.year().checked_add(HORIZON_YEARS)?, 1, 1)?;
        let mut day = t.date().succ_opt()?;
        while day < last {
            if self.months & (1 << day.month()) == 0 {
                // Skip to the first of the next month.
                let (y, m) = if day.month() == 12 {
                    (day.year() + 1, 1)
                } else {
                    (day.year(), day.month() + 1)
                };
                day = NaiveDate::from_ymd_opt(y, m, 1)?;
                continue;
            }
            if self.day_matches(day) {
                return Some(day.and_time(first));
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The first matching time of day at or after `hour:minute:second` (which may overflow its
    /// field by one: second 60 is the next minute).
    fn time_from(&self, hour: u32, minute: u32, second: u32) -> Option<NaiveTime> {
        let (mut h, mut m, mut s) = (hour, minute, second);
        loop {
            if s > 59 {
                s = 0;
                m += 1;
            }
            if m > 59 {
                m = 0;
                s = 0;
                h += 1;
            }
            if h > 23 {
                return None;
            }
            if self.hours & (1 << h) == 0 {
                h = next_bit(self.hours as u64, h + 1, 23)?;
                m = 0;
                s = 0;
                continue;
            }
            if self.minutes & (1 << m) == 0 {
                match next_bit(self.minutes, m + 1, 59) {
                    Some(next) => {
                        m = next;
                        s = 0;
                    }
                    None => {
                        m = 60;
                    }
                }
                continue;
            }
            match next_bit(self.seconds, s, 59) {
                Some(sec) => return NaiveTime::from_hms_opt(h, m, sec),
                None => s = 60,
            }
        }
    }

    /// A plain-language reading of the expression, for example "At 08:30, Monday through
    /// Friday".
    pub fn describe(&self) -> String {
        let mut parts = vec![self.describe_time()];
        parts.extend(self.describe_days());
        if self.months != ALL_MONTHS {
            let months = describe_set(self.months as u64, 1, 12, &|v| {
                MONTH_NAMES[v as usize - 1].to_string()
            });
            parts.push(format!("in {months}"));
        }
        parts.join(", ")
    }

    fn describe_time(&self) -> String {
        let single = |set: u64| (set.count_ones() == 1).then(|| set.trailing_zeros());
        let all_h = self.hours == ALL_HOURS;
        // Fixed times of day: "At 08:30" or "At 08:30 and 17:30".
        if let (Some(m), Some(s)) = (single(self.minutes), single(self.seconds)) {
            if self.hours.count_ones() <= 4 && !all_h {
                let times: Vec<String> = bits(self.hours as u64)
                    .map(|h| match s {
                        0 => format!("{h:02}:{m:02}"),
                        s => format!("{h:02}:{m:02}:{s:02}"),
                    })
                    .collect();
                return format!("At {}", join_and(&times));
            }
        }
        let num = |v: u32| v.to_string();
        let mut words = Vec::new();
        if self.seconds == ALL_60 {
            words.push("every second".to_string());
        } else if let Some(step) = star_step(self.seconds, 0, 59) {
            words.push(format!("every {step} seconds"));
        } else if self.seconds != 1 {
            words.push(format!(
                "at second {}",
                describe_set(self.seconds, 0, 59, &num)
            ));
        }
        if self.minutes == ALL_60 {
            if words.is_empty() {
                words.push("every minute".into());
            } else if self.seconds.count_ones() < 60 && star_step(self.seconds, 0, 59).is_none() {
                words.push("of every minute".into());
            }
        } else if let Some(step) = star_step(self.minutes, 0, 59) {
            words.push(format!("every {step} minutes"));
        } else {
            words.push(format!(
                "at minute {}",
                describe_set(self.minutes, 0, 59, &num)
            ));
            if all_h {
                words.push("of every hour".into());
            }
        }
        if let Some(step) = star_step(self.hours as u64, 0, 23) {
            words.push(format!("every {step} hours"));
        } else if !all_h {
            let hours = describe_set(self.hours as u64, 0, 23, &|h| format!("{h:02}"));
            let plural = if self.hours.count_ones() > 1 { "s" } else { "" };
            words.push(format!("during hour{plural} {hours}"));
        }
        let text = words.join(" ");
        let mut chars = text.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => text,
        }
    }

    fn describe_days(&self) -> Option<String> {
        let dom_all = self.days == ALL_DAYS && !self.special.last_day;
        let dow_all = self.weekdays == ALL_WEEKDAYS && !self.special.has_weekdays();
        let dom = || {
            let mut items = vec![];
            if self.days != 0 {
                items.push(format!(
                    "on day {} of the month",
                    describe_set(self.days as u64, 1, 31, &|d| d.to_string())
                ));
            }
            if self.special.last_day {
                items.push("on the last day of the month".into());
            }
            items.join(" and ")
        };
        let dow = || {
            let set = self.weekdays as u64;
            let mut items = vec![];
            if set != 0 {
                let text = describe_set(set, 0, 6, &|d| DAY_NAMES[d as usize].to_string());
                let run = text.contains(" through ") && !text.contains([',']);
                items.push(if run && !text.contains(" and ") {
                    text
                } else {
                    format!("on {text}")
                });
            }
            const NTH: [&str; 6] = ["", "first", "second", "third", "fourth", "fifth"];
            for (day, nth) in self.special.nth.iter().enumerate() {
                for k in bits(*nth as u64) {
                    let (nth, name) = (NTH[k as usize], DAY_NAMES[day]);
                    items.push(format!("on the {nth} {name} of the month"));
                }
            }
            for day in bits(self.special.last_weekday as u64) {
                let name = DAY_NAMES[day as usize];
                items.push(format!("on the last {name} of the month"));
            }
            join_and(&items)
        };
        match (dom_all, dow_all) {
            (true, true) => None,
            (false, true) if !self.day_or => Some(dom()),
            (true, false) if !self.day_or => Some(dow()),
            _ if self.day_or => Some(format!("{} or {}", dom(), dow())),
            _ => Some(format!(
                "{} if it is also {}",
                dom(),
                dow().trim_start_matches("on ")
            )),
        }
    }
}

const ALL_60: u64 = (1 << 60) - 1;
const ALL_HOURS: u32 = (1 << 24) - 1;
const ALL_DAYS: u32 = ((1u64 << 32) - 2) as u32;
const ALL_MONTHS: u16 = ((1 << 13) - 2) as u16;
const ALL_WEEKDAYS: u8 = (1 << 7) - 1;

/// The lowest set bit of `set` in `from..=max`.
fn next_bit(set: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let masked = set >> from;
    if masked == 0 {
        return None;
    }
    let bit = from + masked.trailing_zeros();
    (bit <= max).then_some(bit)
}

fn bits(set: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |b| set & (1u64 << b) != 0)
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `Some(step)` when `set` is exactly `lo, lo+step, …` up to `hi` with step > 1.
fn star_step(set: u64, lo: u32, hi: u32) -> Option<u32> {
    let values: Vec<u32> = bits(set).collect();
    if values.len() < 2 || values[0] != lo {
        return None;
    }
    let step = values[1] - values[0];
    let expected: Vec<u32> = (lo..=hi).step_by(step as usize).collect();
    (step > 1 && values == expected).then_some(step)
}

/// A set of values in words: runs of three or more as "X through Y", the rest listed.
fn describe_set(set: u64, lo: u32, hi: u32, name: &dyn Fn(u32) -> String) -> String {
    let values: Vec<u32> = bits(set).filter(|v| (lo..=hi).contains(v)).collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            items.push(format!("{} through {}", name(values[i]), name(values[j])));
        } else {
            items.extend(values[i..=j].iter().map(|v| name(*v)));
        }
        i = j + 1;
    }
    join_and(&items)
}

/// The day of the month `date`'s month ends on.
fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = match date.month() {
        12 => (date.year() + 1, 1),
        m => (date.year(), m + 1),
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day())
}

/// One field's text as a bit set of the values it allows (day-of-week keeps 7 as bit 7); the
/// day fields' extensions go to `special`.
fn parse_field(
    kind: Kind,
    text: &str,
    expr: &str,
    special: &mut Special,
) -> Result<u64, CronError> {
    let err = |item: &str, why: String| {
        CronError(format!("{} field `{item}` in `{expr}`: {why}", kind.name()))
    };
    let (lo, hi) = kind.bounds();
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(err(text, "empty list item".into()));
        }
        if kind == Kind::DayOfMonth && item.eq_ignore_ascii_case("L") {
            special.last_day = true;
            continue;
        }
        if kind == Kind::DayOfWeek {
            if let Some((day, k)) = item.split_once('#') {
                let day = weekday_value(day).ok_or_else(|| {
                    err(item, format!("`{day}` is not a weekday (0-7 or SUN-SAT)"))
                })?;
                let k: u32 = k
                    .parse()
                    .ok()
                    .filter(|k| (1..=5).contains(k))
                    .ok_or_else(|| err(item, format!("`#{k}`: the occurrence must be 1-5")))?;
                special.nth[day] |= 1 << k;
                continue;
            }
            let upper = item.to_ascii_uppercase();
            if let Some(day) = upper
                .strip_suffix('L')
                .or_else(|| upper.strip_prefix('L'))
                .filter(|d| !d.is_empty())
            {
                let day = weekday_value(day).ok_or_else(|| {
                    err(item, format!("`{day}` is not a weekday (0-7 or SUN-SAT)"))
                })?;
                special.last_weekday |= 1 << day;
                continue;
            }
        }
        let (base, step) = match item.split_once('/') {
            None => (item, None),
            Some((base, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| (1..=hi).contains(s))
                    .ok_or_else(|| err(item, format!("step `{step}` must be 1-{hi}")))?;
                (base, Some(step))
            }
        };
        let value = |v: &str| -> Result<u32, CronError> {
            if v.is_empty() {
                return Err(err(item, "a value is missing".into()));
            }
            if v == "?" {
                return Err(err(item, "`?` is Quartz syntax: write `*`".into()));
            }
            if v.bytes().all(|b| b.is_ascii_digit()) {
                let n: u32 = v.parse().unwrap_or(u32::MAX);
                if !(lo..=hi).contains(&n) {
                    return Err(err(item, format!("must be {lo}-{hi}")));
                }
                return Ok(n);
            }
            let names = kind.names();
            if names.is_empty() {
                return Err(err(item, format!("`{v}` is not a number {lo}-{hi}")));
            }
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(v))
                .map(|i| i as u32 + kind.first_named())
                .ok_or_else(|| {
                    err(
                        item,
                        format!(
                            "`{v}` is not a number {lo}-{hi} or a name ({}-{})",
                            names[0],
                            names[names.len() - 1]
                        ),
                    )
                })
        };
        let (from, to) = if base == "*" {
            (lo, kind.star_max())
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(err(
                    item,
                    format!("the range runs backwards ({a} is after {b})"),
                ));
            }
            (a, b)
        } else {
            let a = value(base)?;
            match step {
                // `N/step` is `N-max/step`.
                Some(_) => (a, kind.star_max().max(a)),
                None => (a, a),
            }
        };
        let step = step.unwrap_or(1);
        for v in (from..=to).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

/// A weekday number (0-7, 7 = Sunday) or three-letter name as 0-6.
fn weekday_value(text: &str) -> Option<usize> {
    if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() && text.len() <= 2 {
        let n: usize = text.parse().ok()?;
        return (n <= 7).then_some(n % 7);
    }
    DAYS.iter().position(|d| d.eq_ignore_ascii_case(text))
}

/// Rewrites an expression stored for the old `cron` crate's reading into ours, so it matches
/// the days its owner meant; `None` when nothing needs to change or the text is not a 5- or
/// 6-field expression.
///
/// * 6 fields (seconds first) is the crate's own Quartz form, written for its numbering (1 =
///   Sunday … 7 = Saturday): the weekday numbers are shifted (1 → 0 … 7 → 6) and it keeps its
///   days.
/// * 5 fields is the crontab form the task form asked for (1 = Monday): its weekday numbers are
///   kept, and it now fires on the days its owner meant (see [`reads_differently`]).
/// * Either way `?` becomes `*` and full day and month names their three-letter forms.
pub fn from_quartz(expr: &str) -> Option<String> {
    let mut fields: Vec<String> = expr.split_ascii_whitespace().map(str::to_string).collect();
    if !(5..=6).contains(&fields.len()) {
        return None;
    }
    let n = fields.len();
    let quartz_numbers = n == 6;
    let (dom, month, dow) = (n - 3, n - 2, n - 1);
    // `?` is "any day": `*` (Quartz allows a step after it too).
    if fields[dom].starts_with('?') {
        fields[dom] = fields[dom].replacen('?', "*", 1);
    }
    fields[month] = fields[month]
        .split(',')
        .map(|item| map_tokens(item, &|t| short_name(t, &MONTH_NAMES)))
        .collect::<Vec<_>>()
        .join(",");
    fields[dow] = fields[dow]
        .split(',')
        .map(|item| quartz_weekday_item(item, quartz_numbers))
        .collect::<Vec<_>>()
        .join(",");
    let out = fields.join(" ");
    let unchanged: Vec<&str> = expr.split_ascii_whitespace().collect();
    (out != unchanged.join(" ")).then_some(out)
}

/// Whether a stored 5-field expression now fires on other weekdays than it did: a number in its
/// day-of-week field outside a step (`1-5`, `0`, `2,4`; not `*/2`, which picks the same days in
/// both numberings). Its text is kept (see [`from_quartz`]); its next fire time must be worked
/// out again.
pub fn reads_differently(expr: &str) -> bool {
    let fields: Vec<&str> = expr.split_ascii_whitespace().collect();
    fields.len() == 5
        && fields[4].split(',').any(|item| {
            let base = item.split('/').next().unwrap_or("");
            base.bytes().any(|b| b.is_ascii_digit())
        })
}

/// One day-of-week list item to ours: `?` becomes `*`, full names three-letter ones, and with
/// `shift` numbers go from Quartz numbering (1 = Sunday) to ours (0 = Sunday).
fn quartz_weekday_item(item: &str, shift: bool) -> String {
    if item == "?" {
        return "*".into();
    }
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    let renumber = |t: &str| match t.parse::<u32>() {
        Ok(n) if n >= 1 && shift => (n - 1).to_string(),
        Ok(_) => t.to_string(),
        _ => short_name(t, &DAY_NAMES),
    };
    let base = match (base.split_once('-'), step) {
        (Some((a, b)), _) => format!("{}-{}", renumber(a), renumber(b)),
        // Quartz `N/step` runs to 7 (Saturday), ours to 6: the same days once shifted, but
        // spelled as a range so nothing depends on where `N/step` stops.
        (None, Some(_)) if shift && base != "*" && base != "?" => format!("{}-6", renumber(base)),
        (None, _) if base == "?" => "*".into(),
        (None, _) => renumber(base),
    };
    match step {
        Some(s) => format!("{base}/{s}"),
        None => base,
    }
}

/// Applies `f` to each `-`-separated token of a list item (keeping any `/step`).
fn map_tokens(item: &str, f: &dyn Fn(&str) -> String) -> String {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    let base = base.split('-').map(f).collect::<Vec<_>>().join("-");
    match step {
        Some(s) => format!("{base}/{s}"),
        None => base,
    }
}

/// A full (or Quartz-abbreviated, "Tues", "Thurs") English name as its three-letter form; any
/// other token unchanged.
fn short_name(token: &str, full: &[&str]) -> String {
    let lower = token.to_ascii_lowercase();
    if token.len() > 3 && token.bytes().all(|b| b.is_ascii_alphabetic()) {
        if let Some(name) = full
            .iter()
            .find(|n| n.to_ascii_lowercase().starts_with(&lower))
        {
            return name[..3].to_ascii_uppercase();
        }
    }
    token.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn next(expr: &str, from: &str, n: usize) -> Vec<String> {
        let c = Cron::parse(expr).unwrap();
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = c.next_after(t).unwrap();
                t.format("%a %Y-%m-%d %H:%M:%S").to_string()
            })
            .collect()
    }

    /// Hand-checked against crontab(5) and a calendar (2026-01-05 is a Monday): expression,
    /// start, the next fires.
    const MAN_PAGE: &[(&str, &str, &[&str])] = &[
        (
            "30 8 * * 1-5",
            "2026-01-09 12:00:00",
            &[
                "Mon 2026-01-12 08:30:00",
                "Tue 2026-01-13 08:30:00",
                "Wed 2026-01-14 08:30:00",
                "Thu 2026-01-15 08:30:00",
                "Fri 2026-01-16 08:30:00",
                "Mon 2026-01-19 08:30:00",
            ],
        ),
        (
            "0 9 * * 5",
            "2026-01-05 00:00:00",
            &["Fri 2026-01-09 09:00:00", "Fri 2026-01-16 09:00:00"],
        ),
        // Sunday is 0, 7 or its name.
        (
            "0 9 * * 0",
            "2026-01-05 00:00:00",
            &["Sun 2026-01-11 09:00:00"],
        ),
        (
            "0 9 * * 7",
            "2026-01-05 00:00:00",
            &["Sun 2026-01-11 09:00:00"],
        ),
        (
            "0 9 * * sun",
            "2026-01-05 00:00:00",
            &["Sun 2026-01-11 09:00:00"],
        ),
        (
            "0 9 * * 0,7",
            "2026-01-05 00:00:00",
            &["Sun 2026-01-11 09:00:00"],
        ),
        // The 1st, the 15th and every Wednesday: either day field matching is enough.
        (
            "0 0 1,15 * 3",
            "2026-01-01 00:00:00",
            &[
                "Wed 2026-01-07 00:00:00",
                "Wed 2026-01-14 00:00:00",
                "Thu 2026-01-15 00:00:00",
                "Wed 2026-01-21 00:00:00",
                "Wed 2026-01-28 00:00:00",
                "Sun 2026-02-01 00:00:00",
            ],
        ),
        // A day field starting with `*` is unrestricted for that rule: odd days that are Mondays.
        (
            "0 0 */2 * 1",
            "2026-01-01 00:00:00",
            &["Mon 2026-01-05 00:00:00", "Mon 2026-01-19 00:00:00"],
        ),
        // crontab(5)'s own examples.
        (
            "5 0 * * *",
            "2026-01-01 00:05:00",
            &["Fri 2026-01-02 00:05:00"],
        ),
        (
            "15 14 1 * *",
            "2026-01-01 15:00:00",
            &["Sun 2026-02-01 14:15:00"],
        ),
        (
            "0 22 * * 1-5",
            "2026-01-09 22:00:00",
            &["Mon 2026-01-12 22:00:00"],
        ),
        (
            "23 0-23/2 * * *",
            "2026-01-01 00:23:00",
            &["Thu 2026-01-01 02:23:00", "Thu 2026-01-01 04:23:00"],
        ),
        (
            "5 4 * * sun",
            "2026-01-01 00:00:00",
            &["Sun 2026-01-04 04:05:00"],
        ),
        (
            "0 0 * jan-mar/2 MON",
            "2026-01-27 00:00:00",
            &["Mon 2026-03-02 00:00:00", "Mon 2026-03-09 00:00:00"],
        ),
        // Steps from a value run to the field's end; day-of-week `N/step` stops at Saturday.
        (
            "5/20 * * * *",
            "2026-01-01 00:00:00",
            &[
                "Thu 2026-01-01 00:05:00",
                "Thu 2026-01-01 00:25:00",
                "Thu 2026-01-01 00:45:00",
            ],
        ),
        (
            "0 0 * * 3/2",
            "2026-01-01 00:00:00",
            &[
                "Fri 2026-01-02 00:00:00",
                "Wed 2026-01-07 00:00:00",
                "Fri 2026-01-09 00:00:00",
            ],
        ),
        // The 29th of February only in leap years.
        (
            "0 0 29 2 *",
            "2026-01-01 00:00:00",
            &["Tue 2028-02-29 00:00:00", "Sun 2032-02-29 00:00:00"],
        ),
        (
            "@weekly",
            "2026-01-01 00:00:00",
            &["Sun 2026-01-04 00:00:00"],
        ),
        // Extensions: the last day, the k-th and the last weekday of the month.
        (
            "0 0 L * *",
            "2026-01-07 00:00:00",
            &[
                "Sat 2026-01-31 00:00:00",
                "Sat 2026-02-28 00:00:00",
                "Tue 2026-03-31 00:00:00",
            ],
        ),
        (
            "0 0 L 2 *",
            "2027-03-01 00:00:00",
            &["Tue 2028-02-29 00:00:00"],
        ),
        (
            "0 0 * * 5#3",
            "2026-01-07 00:00:00",
            &["Fri 2026-01-16 00:00:00", "Fri 2026-02-20 00:00:00"],
        ),
        (
            "0 0 * * fri#5",
            "2026-01-07 00:00:00",
            &["Fri 2026-01-30 00:00:00", "Fri 2026-05-29 00:00:00"],
        ),
        (
            "0 0 * * 5L",
            "2026-01-07 00:00:00",
            &["Fri 2026-01-30 00:00:00", "Fri 2026-02-27 00:00:00"],
        ),
        (
            "0 0 * * L5",
            "2026-01-07 00:00:00",
            &["Fri 2026-01-30 00:00:00"],
        ),
        (
            "@yearly",
            "2026-01-01 00:00:00",
            &["Fri 2027-01-01 00:00:00"],
        ),
        (
            "*/20 * * * * *",
            "2026-12-31 23:59:50",
            &["Fri 2027-01-01 00:00:00", "Fri 2027-01-01 00:00:20"],
        ),
    ];

    #[test]
    fn crontab_man_page_cases() {
        for (expr, from, want) in MAN_PAGE {
            assert_eq!(next(expr, from, want.len()), *want, "{expr}");
        }
        // A day that never comes.
        let never = Cron::parse("0 0 30 2 *").unwrap();
        assert_eq!(never.next_after(at("2026-01-01 00:00:00")), None);
    }

    #[test]
    fn errors_quote_the_expression_and_field() {
        let err = |e: &str| Cron::parse(e).unwrap_err().0;
        assert_eq!(
            err("61 * * * *"),
            "minute field `61` in `61 * * * *`: must be 0-59"
        );
        assert_eq!(
            err("0 9 * * 8"),
            "day-of-week field `8` in `0 9 * * 8`: must be 0-7"
        );
        assert_eq!(
            err("0 22-2 * * *"),
            "hour field `22-2` in `0 22-2 * * *`: the range runs backwards (22 is after 2)"
        );
        assert!(err("* * *").contains("`* * *` has 3 fields"));
        assert!(err("0 0 ? * MON").contains("`?` is Quartz syntax"));
        assert!(err("*/0 * * * *").contains("step `0` must be 1-59"));
        assert!(err("0 0 * * MONDAY").contains("`MONDAY` is not a number 0-7 or a name"));
        assert!(err("0 0 1,,2 * *").contains("empty list item"));
        assert!(err("@reboot").contains("not a cron shortcut"));
        assert!(err("0 0 * * 5#6").contains("`#6`: the occurrence must be 1-5"));
        assert!(err("0 0 * * 8L").contains("`8` is not a weekday"));
        assert!(err("0 0 L-2 * *").contains("day-of-month field `L-2`"));
        assert!(err(&"1,".repeat(200)).contains("at most 256 characters"));
    }

    #[test]
    fn descriptions_read_as_people_say_them() {
        let d = |e: &str| Cron::parse(e).unwrap().describe();
        assert_eq!(d("30 8 * * 1-5"), "At 08:30, Monday through Friday");
        assert_eq!(d("0 9 * * 5"), "At 09:00, on Friday");
        assert_eq!(d("0 9 * * 0"), d("0 9 * * 7"));
        assert_eq!(
            d("0 0 1,15 * 3"),
            "At 00:00, on day 1 and 15 of the month or on Wednesday"
        );
        assert_eq!(d("*/15 * * * *"), "Every 15 minutes");
        assert_eq!(d("* * * * *"), "Every minute");
        assert_eq!(d("30 8,17 * * *"), "At 08:30 and 17:30");
        assert_eq!(
            d("0 0 1 1 *"),
            "At 00:00, on day 1 of the month, in January"
        );
        assert_eq!(
            d("5 9-17 * * mon-fri"),
            "At minute 5 during hours 09 through 17, Monday through Friday"
        );
        assert_eq!(d("*/10 * * * * *"), "Every 10 seconds");
        assert_eq!(d("0 0 L * *"), "At 00:00, on the last day of the month");
        assert_eq!(
            d("0 9 * * 1#1,5L"),
            "At 09:00, on the first Monday of the month and on the last Friday of the month"
        );
        assert_eq!(
            d("0 0 */2 * 1"),
            "At 00:00, on day 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29 and 31 of \
             the month if it is also Monday"
        );
    }

    /// Random text never panics the parser or the matcher, and every refusal quotes the
    /// expression as written (issue 23's fuzz target for the cron parser).
    #[test]
    fn random_text_parses_or_is_refused_with_a_quote() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        const PIECES: &[&str] = &[
            "*",
            "/",
            "-",
            ",",
            " ",
            "  ",
            "\t",
            "0",
            "1",
            "5",
            "7",
            "12",
            "15",
            "23",
            "29",
            "31",
            "59",
            "60",
            "99",
            "4294967296",
            "MON",
            "fri",
            "Jan",
            "dec",
            "SUNDAY",
            "?",
            "L",
            "W",
            "#",
            "@",
            "@daily",
            "@hourly",
            "@reboot",
            "é",
            "日",
            "\u{0}",
            "-1",
            "*/",
            "/0",
        ];
        let start = at("2028-02-28 23:59:59");
        for _ in 0..20_000 {
            let n = rng.gen_range(0..14);
            let text: String = (0..n)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect();
            match Cron::parse(&text) {
                Ok(c) => {
                    if let Some(t) = c.next_after(start) {
                        assert!(t > start && c.matches(t), "{text:?} -> {t}");
                    }
                    let _ = c.describe();
                }
                Err(e) => assert!(e.0.contains(&format!("`{}`", text.trim())), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn quartz_expressions_are_rewritten_to_the_same_days() {
        let q = |e: &str| from_quartz(e);
        // 6 fields: the Quartz form, numbers shifted to keep the days.
        assert_eq!(q("0 30 8 * * 2-6").as_deref(), Some("0 30 8 * * 1-5"));
        assert_eq!(q("0 0 9 * * 7").as_deref(), Some("0 0 9 * * 6"));
        assert_eq!(q("0 0 9 * * 1,3").as_deref(), Some("0 0 9 * * 0,2"));
        assert_eq!(q("0 0 9 * * 3/2").as_deref(), Some("0 0 9 * * 2-6/2"));
        // 5 fields: the crontab form, numbers kept (they now mean what the owner meant).
        for kept in ["30 8 * * 1-5", "0 9 * * 7", "0 9 * * 1,3", "0 9 * * 3/2"] {
            assert_eq!(q(kept), None, "{kept}");
            assert!(reads_differently(kept), "{kept}");
        }
        assert_eq!(q("0 9 1 * 2,Friday").as_deref(), Some("0 9 1 * 2,FRI"));
        for same_days in [
            "0 9 * * */2",
            "0 9 * * MON-FRI",
            "0 9 * * *",
            "0 0 9 * * 1-5",
        ] {
            assert!(!reads_differently(same_days), "{same_days}");
        }
        assert_eq!(q("0 0 12 ? * MON").as_deref(), Some("0 0 12 * * MON"));
        assert_eq!(
            q("0 0 * january-march Monday-Thurs").as_deref(),
            Some("0 0 * JAN-MAR MON-THU")
        );
        assert_eq!(q("0 0 12 1 * ?").as_deref(), Some("0 0 12 1 * *"));
        assert_eq!(q("0 0 12 ?/2 * *").as_deref(), Some("0 0 12 */2 * *"));
        for same in [
            "*/5 * * * *",
            "0 9 * * MON-FRI",
            "0 9 * * */2",
            "@daily",
            "x",
        ] {
            assert_eq!(q(same), None, "{same}");
        }
    }
}
