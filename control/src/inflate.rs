//! Log archives inflated as streams with a byte bound, never whole in memory.
//!
//! A run's archive is gzip, and a small one can hold a huge log (200 MB of output is 2 MB
//! gzipped), so reading it whole would cost every reader the log's size. [`inflate`] reads the
//! blob as a stream on a blocking thread and hands out pieces of at most [`PIECE`] bytes through
//! a channel of a few pieces: a reader costs a few hundred KiB whatever the log's size, a slow
//! reader slows its own inflation, and one that leaves stops it. Past the bound a marker line
//! ends the text.
//!
//! Reads that inflate a whole archive (a log's range or search, a bundle's listing, files or
//! diff) take an [`archive_turn`] first: at most four run at once in a process, so a burst of
//! them waits its turn instead of multiplying CPU and memory.

use std::io::{self, BufReader, Read};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use tokio::sync::{mpsc, Semaphore, SemaphorePermit};
use tokio_util::io::SyncIoBridge;

use antcode_core::blob::BlobReader;

/// Most inflated bytes served of one log.
pub use antcode_core::blob::MAX_LOG_BYTES;
/// Most bytes of a piece handed out at once.
pub const PIECE: usize = 64 * 1024;
/// Pieces inflated ahead of the reader.
const AHEAD: usize = 4;

/// Whole-archive reads at once in this process: more would only share the same cores.
static ARCHIVE_READS: Semaphore = Semaphore::const_new(4);

/// A turn to inflate a whole archive, held until dropped.
pub async fn archive_turn() -> SemaphorePermit<'static> {
    ARCHIVE_READS
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// The line that ends a log cut at `limit` bytes.
pub fn cut_marker(limit: u64) -> String {
    format!("\n[antcode: log cut at {limit} bytes]\n")
}

/// Inflates the gzip stream `blob` into pieces, at most `limit` bytes of them and then
/// [`cut_marker`]. An error ends the stream.
pub fn inflate(blob: BlobReader, limit: u64) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    let reader = SyncIoBridge::new(blob);
    tokio::task::spawn_blocking(move || {
        let mut gz = MultiGzDecoder::new(BufReader::with_capacity(PIECE, reader));
        let mut sent = 0u64;
        loop {
            let want = PIECE.min((limit - sent) as usize);
            if want == 0 {
                // Is there more? Then say where it was cut.
                let mut probe = [0u8; 1];
                if let Ok(1..) = gz.read(&mut probe) {
                    let _ = tx.blocking_send(Ok(Bytes::from(cut_marker(limit))));
                }
                return;
            }
            let mut buf = vec![0u8; want];
            let piece = match read_some(&mut gz, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    sent += n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Fills `buf` as far as the stream allows (gzip hands out little at a time).
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Turns byte pieces into text without splitting a UTF-8 sequence across two of them.
#[derive(Default)]
pub struct Utf8Pieces {
    tail: Vec<u8>,
}

impl Utf8Pieces {
    /// The text of `piece` after what was held back, less an incomplete sequence at its end.
    pub fn push(&mut self, piece: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(piece);
        let keep = incomplete_tail(&buf);
        self.tail = buf.split_off(buf.len() - keep);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// How many bytes at the end of `b` start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue;
        }
        let need = match c {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_sequences_whole() {
        let text = "héllo wörld 🦀!";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut p = Utf8Pieces::default();
            let joined = p.push(&bytes[..split]) + &p.push(&bytes[split..]);
            assert_eq!(joined, text, "split at {split}");
        }
    }

    #[tokio::test]
    async fn a_log_past_the_bound_is_cut_with_a_marker() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &vec![b'x'; 300 * 1024]).unwrap();
        let data = gz.finish().unwrap();
        let blob: BlobReader = Box::pin(std::io::Cursor::new(data));
        let mut rx = inflate(blob, 100 * 1024);
        let mut out = Vec::new();
        while let Some(piece) = rx.recv().await {
            out.extend_from_slice(&piece.unwrap());
        }
        let marker = cut_marker(100 * 1024);
        assert_eq!(out.len(), 100 * 1024 + marker.len());
        assert!(out.ends_with(marker.as_bytes()));
    }
}
