//! Reading part of a log: a byte range of it (`Range: bytes=…`, so a viewer opens at the tail and
//! loads earlier parts on demand) and the lines that match a search.
//!
//! Both read the log as the pieces [`crate::inflate`] hands out, so they cost a few pieces of
//! memory plus what they answer, whatever the log's size: a range keeps at most
//! [`MAX_RANGE_BYTES`], a search at most [`MAX_MATCHES`] lines of [`MAX_MATCH_CHARS`]. The log's
//! total size is only known at its end, so both read to the end (inflating 15 MB takes tens of
//! milliseconds; sending it took a viewer a minute).

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::mpsc;

/// Most bytes one range answer carries; a longer range is answered with its first this-many
/// (its `Content-Range` says so).
pub const MAX_RANGE_BYTES: u64 = 4 * 1024 * 1024;
/// Most matching lines one search answers.
pub const MAX_MATCHES: usize = 1000;
/// A matching line is cut to this many characters.
pub const MAX_MATCH_CHARS: usize = 1000;
/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 256;

/// One `bytes=` range of a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (`last` inclusive; `None` for `bytes=first-`).
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// The range a `Range` header asks for; `None` for no header, another unit, several ranges or a
/// malformed one, which are all answered with the whole log (as RFC 9110 allows).
pub fn parse_range(header: Option<&str>) -> Option<ByteRange> {
    let spec = header?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => number(last).filter(|n| *n > 0).map(ByteRange::Suffix),
        (false, true) => number(first).map(|first| ByteRange::From { first, last: None }),
        (false, false) => {
            let (first, last) = (number(first)?, number(last)?);
            (first <= last).then_some(ByteRange::From {
                first,
                last: Some(last),
            })
        }
        (true, true) => None,
    }
}

/// What a range read found.
#[derive(Debug)]
pub struct Slice {
    /// The bytes of `start..start + bytes.len()`.
    pub bytes: Bytes,
    pub start: u64,
    /// The log's whole size.
    pub total: u64,
}

impl Slice {
    /// False when the range starts past the end (answered with 416).
    pub fn satisfiable(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// The `Content-Range` of the answer: `bytes first-last/total`, or `bytes */total`.
    pub fn content_range(&self) -> String {
        match self.satisfiable() {
            true => format!(
                "bytes {}-{}/{}",
                self.start,
                self.start + self.bytes.len() as u64 - 1,
                self.total
            ),
            false => format!("bytes */{}", self.total),
        }
    }
}

/// Reads `range` of the log `pieces` carry (at most [`MAX_RANGE_BYTES`] of it).
pub async fn read_range(
    mut pieces: mpsc::Receiver<io::Result<Bytes>>,
    range: ByteRange,
) -> io::Result<Slice> {
    let _turn = crate::inflate::archive_turn().await;
    let mut total = 0u64;
    match range {
        ByteRange::From { first, last } => {
            let last = last
                .unwrap_or(u64::MAX)
                .min(first.saturating_add(MAX_RANGE_BYTES - 1));
            let mut kept = BytesMut::new();
            while let Some(piece) = pieces.recv().await {
                let piece = piece?;
                let (from, to) = (total, total + piece.len() as u64);
                total = to;
                // The part of [from, to) inside [first, last].
                let lo = first.max(from);
                let hi = to.min(last.saturating_add(1));
                if lo < hi {
                    kept.extend_from_slice(&piece[(lo - from) as usize..(hi - from) as usize]);
                }
            }
            Ok(Slice {
                bytes: kept.freeze(),
                start: first,
                total,
            })
        }
        ByteRange::Suffix(n) => {
            let n = n.min(MAX_RANGE_BYTES);
            // The last pieces holding at least `n` bytes.
            let mut tail: VecDeque<Bytes> = VecDeque::new();
            let mut held = 0u64;
            while let Some(piece) = pieces.recv().await {
                let piece = piece?;
                total += piece.len() as u64;
                held += piece.len() as u64;
                tail.push_back(piece);
                while tail.front().is_some_and(|f| held - f.len() as u64 >= n) {
                    held -= tail.pop_front().map_or(0, |f| f.len() as u64);
                }
            }
            let mut kept = BytesMut::with_capacity(held as usize);
            for piece in tail {
                kept.extend_from_slice(&piece);
            }
            let skip = held.saturating_sub(n) as usize;
            let bytes = kept.freeze().slice(skip..);
            Ok(Slice {
                start: total - bytes.len() as u64,
                bytes,
                total,
            })
        }
    }
}

/// One line that matched a search.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Match {
    /// 1 for the log's first line.
    pub line: u64,
    /// Where the line starts in the log, in bytes (a range request from here shows it).
    pub offset: u64,
    /// The line without its newline, cut to [`MAX_MATCH_CHARS`].
    pub text: String,
}

/// What a search found.
#[derive(Debug, Serialize)]
pub struct Found {
    pub matches: Vec<Match>,
    /// True when more lines matched than [`MAX_MATCHES`].
    pub truncated: bool,
    pub lines: u64,
    pub bytes: u64,
}

/// The lines of the log `pieces` carry that contain `query`, ignoring ASCII case.
pub async fn search(
    mut pieces: mpsc::Receiver<io::Result<Bytes>>,
    query: &str,
) -> io::Result<Found> {
    let _turn = crate::inflate::archive_turn().await;
    let needle = query.to_ascii_lowercase().into_bytes();
    // Linear in the line whatever the text (a naive scan is quadratic on `AAAA…`).
    let finder = memchr::memmem::Finder::new(&needle);
    let mut lowered: Vec<u8> = Vec::new();
    let mut found = Found {
        matches: vec![],
        truncated: false,
        lines: 0,
        bytes: 0,
    };
    // The line being read (a log line is at most 64 KiB; a longer run of bytes without a
    // newline is judged by its first MAX_LINE bytes).
    let mut line: Vec<u8> = Vec::new();
    let mut line_start = 0u64;
    let mut check = |line: &[u8], start: u64, found: &mut Found| {
        found.lines += 1;
        lowered.clear();
        lowered.extend(line.iter().map(u8::to_ascii_lowercase));
        if finder.find(&lowered).is_some() {
            if found.matches.len() == MAX_MATCHES {
                found.truncated = true;
                return;
            }
            let text = String::from_utf8_lossy(line);
            found.matches.push(Match {
                line: found.lines,
                offset: start,
                text: text.chars().take(MAX_MATCH_CHARS).collect(),
            });
        }
    };
    while let Some(piece) = pieces.recv().await {
        let piece = piece?;
        let mut rest = &piece[..];
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            extend_bounded(&mut line, &rest[..at]);
            check(&line, line_start, &mut found);
            line.clear();
            line_start = found.bytes + (piece.len() - rest.len() + at + 1) as u64;
            rest = &rest[at + 1..];
        }
        extend_bounded(&mut line, rest);
        found.bytes += piece.len() as u64;
    }
    if !line.is_empty() {
        check(&line, line_start, &mut found);
    }
    Ok(found)
}

/// Longest part of one line a search looks at.
const MAX_LINE: usize = 64 * 1024;

fn extend_bounded(line: &mut Vec<u8>, more: &[u8]) {
    let room = MAX_LINE.saturating_sub(line.len());
    line.extend_from_slice(&more[..more.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as the pieces a log is read in, `size` bytes each.
    fn pieces(text: &str, size: usize) -> mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(text.len() / size + 2);
        for piece in text.as_bytes().chunks(size) {
            tx.try_send(Ok(Bytes::copy_from_slice(piece))).unwrap();
        }
        rx
    }

    #[test]
    fn ranges_parse_as_rfc_9110_writes_them() {
        let p = |h: &str| parse_range(Some(h));
        assert_eq!(p("bytes=-500"), Some(ByteRange::Suffix(500)));
        assert_eq!(
            p("bytes=10-"),
            Some(ByteRange::From {
                first: 10,
                last: None
            })
        );
        assert_eq!(
            p("bytes= 0 - 99"),
            Some(ByteRange::From {
                first: 0,
                last: Some(99)
            })
        );
        for whole in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=-",
            "bytes=-0",
            "bytes=x-",
        ] {
            assert_eq!(p(whole), None, "{whole}");
        }
        assert_eq!(parse_range(None), None);
    }

    #[tokio::test]
    async fn a_range_is_the_same_bytes_whatever_the_pieces() {
        let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let total = text.len() as u64;
        for size in [1, 7, 64, 10_000] {
            let tail = read_range(pieces(&text, size), ByteRange::Suffix(100))
                .await
                .unwrap();
            assert_eq!(&tail.bytes[..], &text.as_bytes()[text.len() - 100..]);
            assert_eq!((tail.start, tail.total), (total - 100, total));
            assert_eq!(
                tail.content_range(),
                format!("bytes {}-{}/{total}", total - 100, total - 1)
            );
            let mid = ByteRange::From {
                first: 50,
                last: Some(149),
            };
            let mid = read_range(pieces(&text, size), mid).await.unwrap();
            assert_eq!(
                &mid.bytes[..],
                &text.as_bytes()[50..150],
                "pieces of {size}"
            );
            let open = ByteRange::From {
                first: total - 3,
                last: None,
            };
            let open = read_range(pieces(&text, size), open).await.unwrap();
            assert_eq!(&open.bytes[..], &text.as_bytes()[text.len() - 3..]);
        }
        // More than the log: all of it; past its end: nothing, said as `*/total`.
        let all = read_range(pieces(&text, 64), ByteRange::Suffix(total * 2))
            .await
            .unwrap();
        assert_eq!((all.start, all.bytes.len() as u64), (0, total));
        let past = ByteRange::From {
            first: total,
            last: None,
        };
        let past = read_range(pieces(&text, 64), past).await.unwrap();
        assert!(!past.satisfiable());
        assert_eq!(past.content_range(), format!("bytes */{total}"));
    }

    #[tokio::test]
    async fn a_range_keeps_at_most_its_bound() {
        let text = "x".repeat(MAX_RANGE_BYTES as usize + 10);
        let r = ByteRange::From {
            first: 0,
            last: None,
        };
        let slice = read_range(pieces(&text, 64 * 1024), r).await.unwrap();
        assert_eq!(slice.bytes.len() as u64, MAX_RANGE_BYTES);
        assert_eq!(slice.total, text.len() as u64);
        let tail = read_range(pieces(&text, 64 * 1024), ByteRange::Suffix(u64::MAX))
            .await
            .unwrap();
        assert_eq!(tail.bytes.len() as u64, MAX_RANGE_BYTES);
    }

    #[tokio::test]
    async fn a_search_finds_lines_and_where_they_start() {
        let text = "alpha\nBeta error\ngamma\nERROR at the end";
        for size in [1, 3, 100] {
            let found = search(pieces(text, size), "error").await.unwrap();
            assert_eq!(
                found.matches,
                vec![
                    Match {
                        line: 2,
                        offset: 6,
                        text: "Beta error".into()
                    },
                    Match {
                        line: 4,
                        offset: 23,
                        text: "ERROR at the end".into()
                    },
                ],
                "pieces of {size}"
            );
            assert_eq!((found.lines, found.bytes), (4, text.len() as u64));
            assert_eq!(&text[23..], "ERROR at the end");
        }
    }

    #[tokio::test]
    async fn a_search_answers_at_most_its_bound() {
        let text = "hit\n".repeat(MAX_MATCHES + 5);
        let found = search(pieces(&text, 4096), "HIT").await.unwrap();
        assert_eq!(found.matches.len(), MAX_MATCHES);
        assert!(found.truncated);
        assert_eq!(found.lines, (MAX_MATCHES + 5) as u64);
    }
}
