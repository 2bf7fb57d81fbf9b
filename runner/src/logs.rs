//! A run's output: cut into lines, shipped live as sequenced chunks, archived whole.
//!
//! Readers (a task per pipe) turn each pipe into lines (at most [`MAX_LINE`] bytes; longer lines
//! are split on a UTF-8 boundary; invalid UTF-8 is replaced, never fatal; output without a final
//! newline is flushed at EOF) and send them through a small bounded channel, so a child that
//! writes faster than we ship blocks on its pipe instead of growing our memory. The [`LogSink`]
//! keeps every line for the archive (in memory up to [`SMALL_ARCHIVE`], then in a spill file next
//! to the work dir, so a 100 MB log costs disk, not RAM), merges consecutive lines of one stream
//! into chunks of up to [`CHUNK_BYTES`], and ships them every [`FLUSH_EVERY`] or when
//! [`CHUNK_BYTES`] are pending. A run's log is capped at [`LOG_CAP`] bytes, then a marker line is
//! written and the rest dropped.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use antcode_core::broker::{LogChunk, PROGRESS_STREAM};
use antcode_core::time::now_ms;
use tokio::sync::mpsc;

use crate::source::WorkSource;

pub const MAX_LINE: usize = 64 * 1024;
pub const CHUNK_BYTES: usize = 64 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
pub const LOG_CAP: u64 = 256 * 1024 * 1024;
/// Lines in flight between a pipe's reader and the sink (at most 64 × 64 KiB per run).
pub const CHANNEL_LINES: usize = 64;
/// Logs up to this size are kept and archived in memory; a larger one goes to a spill file
/// first, and is compressed file to file.
pub const SMALL_ARCHIVE: u64 = 1024 * 1024;
/// Below this a log is compressed on the runtime thread; above, on a blocking thread.
const COMPRESS_INLINE: usize = 64 * 1024;
/// One read from a pipe (the size of a Linux pipe's buffer).
const READ_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: &'static str,
    pub text: String,
}

/// Cuts a byte stream into lines of at most `max` bytes, each keeping its `\n`.
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(4),
        }
    }

    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            let window = &rest[..rest.len().min(self.max)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                out.push(rest[..=i].to_vec());
                start += i + 1;
            } else if rest.len() >= self.max {
                // Too long: cut, but not inside a UTF-8 sequence.
                let cut = utf8_cut(&rest[..self.max]);
                out.push(rest[..cut].to_vec());
                start += cut;
            } else {
                break;
            }
        }
        self.buf.drain(..start);
    }

    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// Where to cut `data` so that a multi-byte character at its end is not split: before the
/// last character if that one is incomplete, else at the end.
fn utf8_cut(data: &[u8]) -> usize {
    let len = data.len();
    for back in 1..=len.min(3) {
        let b = data[len - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        if need > back && back < len {
            return len - back;
        }
        break;
    }
    len
}

/// Reads a pipe to EOF, sending lines; returns when the pipe closes or the receiver is gone.
/// A pipe is read on the runtime (no thread per stream); anything that cannot be registered
/// with it is read through the blocking pool instead.
pub async fn pump(pipe: File, stream: &'static str, tx: mpsc::Sender<Line>) {
    let fd = std::os::fd::OwnedFd::from(pipe);
    let registered = fd
        .try_clone()
        .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    match registered {
        Ok(reader) => {
            drop(fd);
            pump_from(reader, stream, tx).await
        }
        Err(_) => pump_from(tokio::fs::File::from_std(File::from(fd)), stream, tx).await,
    }
}

async fn pump_from(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
    tx: mpsc::Sender<Line>,
) {
    use tokio::io::AsyncReadExt;
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut buf = vec![0u8; READ_BUF];
    let mut lines = Vec::new();
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                splitter.push(&buf[..n], &mut lines);
                for raw in lines.drain(..) {
                    if tx.send(to_line(stream, &raw)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if let Some(rest) = splitter.finish() {
        let _ = tx.send(to_line(stream, &rest)).await;
    }
}

/// Invalid UTF-8 is replaced, never fatal.
fn to_line(stream: &'static str, raw: &[u8]) -> Line {
    Line {
        stream,
        text: String::from_utf8_lossy(raw).into_owned(),
    }
}

/// Collects one attempt's lines: live shipping, spill file, cap, last stdout line.
pub struct LogSink {
    source: Arc<dyn WorkSource>,
    run_id: String,
    attempt: u32,
    seq: u64,
    pending: Vec<LogChunk>,
    pending_bytes: usize,
    spill_path: PathBuf,
    spill: Spill,
    total: u64,
    cap: u64,
    truncated: bool,
    last_stdout: Option<String>,
    /// False while the last stdout piece had no newline (the next piece continues it).
    stdout_at_line_start: bool,
}

impl LogSink {
    pub fn new(
        source: Arc<dyn WorkSource>,
        run_id: &str,
        attempt: u32,
        spill_path: PathBuf,
    ) -> LogSink {
        LogSink {
            source,
            run_id: run_id.to_string(),
            attempt,
            seq: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            spill_path,
            spill: Spill::Memory(Vec::new()),
            total: 0,
            cap: LOG_CAP,
            truncated: false,
            last_stdout: None,
            stdout_at_line_start: true,
        }
    }

    pub fn with_cap(mut self, cap: u64) -> LogSink {
        self.cap = cap;
        self
    }

    /// Adds a line; true when enough is pending that it should be flushed now.
    pub fn push(&mut self, line: Line) -> bool {
        if line.stream == "stdout" {
            let continues = !self.stdout_at_line_start;
            self.stdout_at_line_start = line.text.ends_with('\n');
            let trimmed = line.text.trim();
            if continues {
                self.last_stdout = None;
            } else if !trimmed.is_empty() {
                self.last_stdout = Some(trimmed.to_string());
            }
        }
        if self.truncated {
            return false;
        }
        if self.total + line.text.len() as u64 > self.cap {
            self.truncated = true;
            let marker = format!(
                "\n[antcode] log truncated: more than {} bytes of output\n",
                self.cap
            );
            self.append("stderr", marker);
            return true;
        }
        self.append(line.stream, line.text);
        self.pending_bytes >= CHUNK_BYTES
    }

    /// A note from the runner itself (why a run was stopped, why it could not start).
    pub fn note(&mut self, text: &str) {
        let mut text = format!("[antcode] {text}");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.append("stderr", text);
    }

    /// A step the run is waiting on (an environment being built), for those following it live:
    /// a chunk of the `progress` stream, neither archived nor counted against the log's cap.
    pub fn progress(&mut self, text: &str) {
        self.seq += 1;
        self.pending.push(LogChunk {
            attempt: self.attempt,
            seq: self.seq,
            stream: PROGRESS_STREAM.to_string(),
            data: text.to_string(),
            at_ms: now_ms(),
        });
    }

    fn append(&mut self, stream: &'static str, text: String) {
        self.total += text.len() as u64;
        metrics::counter!("antcode_runner_log_bytes_total").increment(text.len() as u64);
        if let Err(e) = self.keep(text.as_bytes()) {
            tracing::warn!(run_id = %self.run_id, error = %e, "log spill write failed; archive disabled");
            self.spill = Spill::Off;
        }
        self.pending_bytes += text.len();
        match self.pending.last_mut() {
            Some(last) if last.stream == stream && last.data.len() + text.len() <= CHUNK_BYTES => {
                last.data.push_str(&text);
            }
            _ => {
                self.seq += 1;
                self.pending.push(LogChunk {
                    attempt: self.attempt,
                    seq: self.seq,
                    stream: stream.to_string(),
                    data: text,
                    at_ms: now_ms(),
                });
            }
        }
    }

    /// Adds to what will be archived: in memory while the log is small, then in the spill file.
    fn keep(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.spill {
            Spill::Memory(buf) if (buf.len() + data.len()) as u64 <= SMALL_ARCHIVE => {
                buf.extend_from_slice(data);
                Ok(())
            }
            Spill::Memory(buf) => {
                let mut file = BufWriter::with_capacity(64 * 1024, File::create(&self.spill_path)?);
                file.write_all(buf)?;
                file.write_all(data)?;
                self.spill = Spill::File(file);
                Ok(())
            }
            Spill::File(file) => file.write_all(data),
            Spill::Off => Ok(()),
        }
    }

    /// Ships what is pending. A failed push is logged and dropped: the archive still has it.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if let Err(e) = self.source.push_logs(&self.run_id, &chunks).await {
            tracing::warn!(run_id = %self.run_id, error = %e, "live log push failed");
        }
    }

    /// The last non-blank stdout line parsed as JSON, if it is an object or an array.
    pub fn result(&self) -> Option<serde_json::Value> {
        let line = self.last_stdout.as_deref()?;
        if !(line.starts_with('{') || line.starts_with('[')) {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
    }

    /// Flushes, compresses what was kept into the archive, removes the spill file. Returns the
    /// archive key, or `None` when there was no output at all or the archive could not be
    /// stored.
    pub async fn finish(mut self) -> Option<String> {
        self.flush().await;
        if self.total == 0 {
            // Nothing was printed and nothing noted: there is nothing to keep (the API shows
            // the empty live log), and a silent run costs no blob.
            return None;
        }
        let mut spill = match std::mem::replace(&mut self.spill, Spill::Off) {
            Spill::Memory(data) => return self.finish_small(data).await,
            Spill::File(file) => file,
            Spill::Off => return None,
        };
        let path = self.spill_path.clone();
        let flushed = spill.flush();
        drop(spill);
        if let Err(e) = flushed {
            tracing::warn!(run_id = %self.run_id, error = %e, "log spill flush failed");
            let _ = tokio::fs::remove_file(&path).await;
            return None;
        }
        let gz_path = path.with_extension("log.gz");
        let gz_out = gz_path.clone();
        // Compressed file to file: a 100 MB log never sits in memory.
        let gz = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let out = BufWriter::with_capacity(256 * 1024, File::create(&gz_out)?);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            let mut input = BufReader::with_capacity(256 * 1024, File::open(&path)?);
            std::io::copy(&mut input, &mut enc)?;
            enc.finish()?.flush()?;
            let _ = std::fs::remove_file(&path);
            Ok(())
        })
        .await;
        match gz {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive compression failed");
                let _ = std::fs::remove_file(&gz_path);
                return None;
            }
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive task failed");
                let _ = std::fs::remove_file(&gz_path);
                return None;
            }
        };
        let stored = self
            .source
            .put_log_archive_file(&self.run_id, self.attempt, &gz_path)
            .await;
        let _ = tokio::fs::remove_file(&gz_path).await;
        match stored {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive upload failed");
                None
            }
        }
    }
}

impl LogSink {
    /// A small log is compressed in memory and stored in one call: no file, no upload from
    /// disk (which costs an fsync per run on a local store).
    async fn finish_small(self, data: Vec<u8>) -> Option<String> {
        let inline = data.len() <= COMPRESS_INLINE;
        let compress = move || -> std::io::Result<Vec<u8>> {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            enc.write_all(&data)?;
            enc.finish()
        };
        let gz = if inline {
            Ok(compress())
        } else {
            tokio::task::spawn_blocking(compress).await
        };
        let gz = match gz {
            Ok(Ok(gz)) => gz,
            Ok(Err(e)) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive compression failed");
                return None;
            }
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive task failed");
                return None;
            }
        };
        match self
            .source
            .put_log_archive(&self.run_id, self.attempt, gz.into())
            .await
        {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, error = %e, "log archive upload failed");
                None
            }
        }
    }
}

/// Where a log is kept for its archive.
enum Spill {
    /// Up to [`SMALL_ARCHIVE`] bytes: no file at all.
    Memory(Vec<u8>),
    /// Past it, in the spill file next to the work dir.
    File(BufWriter<File>),
    /// The spill file could not be written: no archive.
    Off,
}

impl Drop for LogSink {
    fn drop(&mut self) {
        if matches!(self.spill, Spill::File(_)) {
            let _ = std::fs::remove_file(&self.spill_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, &mut out);
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_keep_their_newline_and_a_tail_is_flushed() {
        let out = split(100, &[b"ab\ncd", b"e\n\nf"]);
        assert_eq!(
            out,
            vec![
                b"ab\n".to_vec(),
                b"cde\n".to_vec(),
                b"\n".to_vec(),
                b"f".to_vec()
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let text = "é".repeat(10); // 20 bytes
        let out = split(7, &[text.as_bytes()]);
        assert_eq!(
            split(4, &["aaaé".as_bytes()]),
            vec![b"aaa".to_vec(), "é".as_bytes().to_vec()]
        );
        assert_eq!(
            split(4, &["aaé".as_bytes()]),
            vec!["aaé".as_bytes().to_vec()]
        );
        assert!(
            out.iter()
                .all(|p| p.len() <= 7 && std::str::from_utf8(p).is_ok()),
            "{out:?}"
        );
        assert_eq!(out.concat(), text.as_bytes());
    }

    #[test]
    fn bytes_survive_any_split() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| if i % 37 == 0 { b'\n' } else { (i % 251) as u8 })
            .collect();
        let out = split(16, &[&data[..1000], &data[1000..]]);
        assert_eq!(out.concat(), data);
    }
}
