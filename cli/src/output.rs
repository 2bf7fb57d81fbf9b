//! Showing answers: aligned tables and `key  value` lines for people, the API's JSON for
//! scripts. Colour only when standard output is a terminal and `NO_COLOR` is unset or empty.

use serde_json::Value;
use std::io::{IsTerminal, Write};

use crate::args::Output;

/// How a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: Output,
    pub colour: bool,
}

impl Out {
    pub fn new(format: Output) -> Out {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            format,
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    pub fn json(&self) -> bool {
        self.format == Output::Json
    }

    /// `value` as pretty JSON on standard output.
    pub fn print_json(&self, value: &Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        println!("{text}");
    }

    /// `value` as JSON for scripts, else what `human` prints.
    pub fn answer(&self, value: &Value, human: impl FnOnce()) {
        match self.json() {
            true => self.print_json(value),
            false => human(),
        }
    }

    /// A list answer (`{items, next_cursor}`): its JSON for scripts, else a table of
    /// `row(item)` under `header` and, on standard error, the cursor of the next page.
    pub fn page(
        &self,
        list: &Value,
        header: &[&str],
        state_col: Option<usize>,
        row: impl Fn(&Value) -> Vec<String>,
    ) {
        if self.json() {
            return self.print_json(list);
        }
        let rows: Vec<Vec<String>> = items(list).iter().map(row).collect();
        self.table(header, &rows, state_col);
        more(list);
    }

    /// Rows under a header, each column as wide as its widest cell. `colour_col` names a
    /// column whose cells are run states to colour.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>], state_col: Option<usize>) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = std::io::stdout().lock();
        let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(out, "{}", self.bold(&line(&head, &widths, None, self)));
        for row in rows {
            let _ = writeln!(out, "{}", line(row, &widths, state_col, self));
        }
    }

    /// `key  value` lines for a JSON object's fields: text as it is, other values as JSON.
    pub fn fields(&self, value: &Value, keys: &[&str]) {
        let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
        for key in keys {
            let Some(v) = value.get(*key) else { continue };
            let text = match (*key, v) {
                ("state", Value::String(s)) => self.state(s),
                _ => cell(v),
            };
            println!("{}  {text}", self.bold(&format!("{key:width$}")));
        }
    }

    /// Every field of a JSON object: `first` in that order, then the rest by name.
    pub fn all_fields(&self, value: &Value, first: &[&str]) {
        let Some(map) = value.as_object() else {
            return self.print_json(value);
        };
        let mut keys: Vec<&str> = first
            .iter()
            .copied()
            .filter(|k| map.contains_key(*k))
            .collect();
        let mut rest: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !first.contains(k))
            .collect();
        rest.sort_unstable();
        keys.extend(rest);
        self.fields(value, &keys);
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }

    /// A run state, coloured by how it went.
    pub fn state(&self, state: &str) -> String {
        let code = match state {
            "succeeded" => "32",
            "failed" | "timed_out" | "lost" => "31",
            "running" => "36",
            "queued" => "33",
            _ => "2",
        };
        self.paint(state, code)
    }

    fn paint(&self, text: &str, code: &str) -> String {
        match self.colour {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_string(),
        }
    }
}

/// One row, padded; the state column coloured after padding so escapes do not count as width.
fn line(cells: &[String], widths: &[usize], state_col: Option<usize>, out: &Out) -> String {
    let last = cells.len().saturating_sub(1);
    let mut text = String::new();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        let pad = match i == last {
            true => String::new(),
            false => " ".repeat(w.saturating_sub(c.chars().count()) + 2),
        };
        let shown = match Some(i) == state_col {
            true => out.state(c),
            false => c.clone(),
        };
        text.push_str(&shown);
        text.push_str(&pad);
    }
    text
}

/// A JSON value as a table cell: strings bare, null as `-`, the rest compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Field `key` of `v` as a cell.
pub fn field(v: &Value, key: &str) -> String {
    cell(v.get(key).unwrap_or(&Value::Null))
}

/// A duration in milliseconds as `850ms`, `12.3s`, `4m05s` or `2h10m`.
pub fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    match ms {
        ..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A list's `next_cursor`, said on standard error so the table stays clean.
pub fn more(page: &Value) {
    if let Some(c) = page.get("next_cursor").and_then(Value::as_str) {
        eprintln!("(more: --cursor {c})");
    }
}

/// A page's items.
pub fn items(page: &Value) -> &[Value] {
    page.get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(850)), "850ms");
        assert_eq!(duration(Some(12_340)), "12.3s");
        assert_eq!(duration(Some(245_000)), "4m05s");
        assert_eq!(duration(Some(7_800_000)), "2h10m");
    }

    #[test]
    fn a_table_without_colour_is_plain_aligned_text() {
        let out = Out {
            format: Output::Table,
            colour: false,
        };
        let rows = [vec!["a".to_string(), "succeeded".to_string()]];
        let widths = [4, 9];
        assert_eq!(line(&rows[0], &widths, Some(1), &out), "a     succeeded");
    }
}
