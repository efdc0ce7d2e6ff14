//! Following a container's `json-file` log straight from the engine's files.
//!
//! `docker logs --follow` makes dockerd open the same files, decode every JSON line and re-frame
//! it for the HTTP stream; on a small host that costs dockerd about as much CPU as the container's
//! own logging. When the engine is local and the log file is readable, [`follow`] reads the files
//! itself (as log collectors such as Fluent Bit do) with the same result: every line in order with
//! its engine timestamp, from the oldest rotated file on, ending once the container has stopped
//! and the last file is drained.
//!
//! Rotation (`max-size` / `max-file`): the writer renames `<log>` to `<log>.1` (and `.1` to `.2`,
//! …) and starts a new `<log>`. The reader keeps its open file, reads it to the end, then moves to
//! the file written after it: the one at the next lower suffix from where its own file now sits.
//! If the reader fell so far behind that its file was deleted, it goes on with the oldest file
//! left (the lines in between are gone, as they would be for `docker logs`).

use std::borrow::Cow;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use berth_runtime::{LogLine, LogSource, Result, RuntimeError};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::convert::parse_rfc3339;

/// How often the reader looks for new lines at the end of the file.
const POLL: Duration = Duration::from_millis(50);
/// Read size.
const CHUNK: usize = 256 * 1024;
/// How often the reader asks whether the container still runs, while it waits for lines.
const ALIVE_EVERY: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Cow<'a, str>,
    #[serde(default, borrow)]
    time: Cow<'a, str>,
}

/// One line of a json-file log → a [`LogLine`] (`None` for a line that is not an entry).
pub(crate) fn parse_entry(raw: &[u8]) -> Option<LogLine> {
    let e: Entry<'_> = serde_json::from_slice(raw).ok()?;
    let source = match e.stream.as_ref() {
        "stderr" => LogSource::Stderr,
        _ => LogSource::Stdout,
    };
    let text = e.log.as_ref();
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Some(LogLine {
        source,
        timestamp: parse_rfc3339(&e.time),
        line: text.to_string(),
    })
}

/// The rotated files of `path` (`path.1`, `path.2`, …) that exist, newest first. A rotation in
/// progress leaves one index empty for a moment (the files move up one by one, oldest first), so
/// one missing index does not end the scan; two in a row do.
fn rotated(path: &Path) -> Vec<(u32, PathBuf, u64)> {
    let mut out = Vec::new();
    let mut missing = 0;
    for k in 1..=10_000u32 {
        let p = PathBuf::from(format!("{}.{k}", path.display()));
        match std::fs::metadata(&p) {
            Ok(m) => {
                missing = 0;
                out.push((k, p, m.ino()));
            }
            Err(_) => {
                missing += 1;
                if missing == 2 {
                    break;
                }
            }
        }
    }
    out
}

/// The inode of the file at `path`, if there is one.
fn ino_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).map(|m| m.ino()).ok()
}

/// The oldest log file there is: the highest-numbered rotated file, else the current one.
fn oldest(path: &Path) -> PathBuf {
    rotated(path)
        .last()
        .map(|(_, p, _)| p.clone())
        .unwrap_or_else(|| path.to_path_buf())
}

/// What follows the file with inode `ino`.
enum Next {
    /// It is the current file.
    Current,
    /// This file was written after it.
    File(PathBuf),
    /// It is not to be found (deleted, or mid-rotation).
    Lost,
}

/// The file written after the one with inode `ino`: the existing file with the next lower
/// index (even mid-rotation, where one index may be empty, the nearest lower one is newer).
fn next_file(path: &Path, ino: u64) -> Next {
    if ino_of(path) == Some(ino) {
        return Next::Current;
    }
    let rot = rotated(path);
    match rot.iter().position(|(_, _, i)| *i == ino) {
        Some(0) => Next::File(path.to_path_buf()),
        Some(pos) => Next::File(rot[pos - 1].1.clone()),
        None => Next::Lost,
    }
}

/// Whether the container is still running (Err: it is gone).
pub(crate) type Alive =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<bool>> + Send>> + Send + Sync>;

/// Follows the json-file log at `path` from its oldest rotated file: lines at or after `since`,
/// of the wanted streams, in chunks; ends when `alive` says the container stopped and the files
/// are drained (or is gone). Errors end the stream after being sent.
pub(crate) fn follow(
    path: PathBuf,
    since: Option<SystemTime>,
    stdout: bool,
    stderr: bool,
    alive: Alive,
) -> mpsc::Receiver<Result<Vec<LogLine>>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = run(&path, since, stdout, stderr, &alive, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn open_oldest(path: &Path) -> Result<(PathBuf, tokio::fs::File, u64)> {
    let mut last_err = None;
    // The engine creates the file when the container's logger starts: wait up to ~5 s for it.
    for _ in 0..1000 {
        let oldest = oldest(path);
        let file = match tokio::fs::File::open(&oldest).await {
            Ok(f) => f,
            Err(e) => {
                last_err = Some(io_err(&oldest, e));
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let ino = file.metadata().await.map_err(|e| io_err(&oldest, e))?.ino();
        let still_oldest = match rotated(path).last() {
            Some((_, _, i)) => *i == ino,
            None => ino_of(path) == Some(ino),
        };
        if still_oldest {
            return Ok((oldest, file, ino));
        }
    }
    Err(last_err.unwrap_or_else(|| RuntimeError::Other {
        message: format!("{}: the log files kept rotating", path.display()),
    }))
}

fn io_err(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Other {
        message: format!("reading {}: {e}", path.display()),
    }
}

async fn run(
    path: &Path,
    since: Option<SystemTime>,
    stdout: bool,
    stderr: bool,
    alive: &Alive,
    tx: &mpsc::Sender<Result<Vec<LogLine>>>,
) -> Result<()> {
    // Start with the oldest file (checked after opening: a rotation in between would have
    // moved it, and we would have opened a newer one).
    let (mut current, mut file, mut ino) = open_oldest(path).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut chunk = vec![0u8; CHUNK];
    // After the container is seen stopped: one more look at the end before finishing (the
    // engine may still be writing its last lines).
    let mut stopped_seen = false;
    // Rotation seen: this file gets one more read to its end before the reader moves on (a line
    // may have been written to it between the last read and the rename).
    let mut rotation_seen = false;
    // Consecutive looks that did not find this file among the log files.
    let mut lost_checks = 0u32;
    // When the container's state was last asked (an inspect per poll would load the engine).
    let mut last_alive_check: Option<tokio::time::Instant> = None;
    loop {
        let n = file
            .read(&mut chunk)
            .await
            .map_err(|e| io_err(&current, e))?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let mut lines = Vec::new();
            for raw in buf[..last_nl].split(|&b| b == b'\n') {
                let Some(l) = parse_entry(raw) else {
                    continue;
                };
                let wanted = match l.source {
                    LogSource::Stdout => stdout,
                    LogSource::Stderr => stderr,
                };
                if !wanted || matches!((since, l.timestamp), (Some(s), Some(t)) if t < s) {
                    continue;
                }
                lines.push(l);
            }
            buf.drain(..=last_nl);
            if !lines.is_empty() && tx.send(Ok(lines)).await.is_err() {
                return Ok(()); // the reader went away
            }
            continue;
        }
        // At the end of this file. Rotated away? Then it is complete: go on with the next one.
        let mut found = next_file(path, ino);
        for _ in 0..3 {
            // A scan misses a file only when rotations race it: look again at once.
            if !matches!(found, Next::Lost) {
                break;
            }
            found = next_file(path, ino);
        }
        let next = match found {
            Next::Current => {
                lost_checks = 0;
                None
            }
            Next::File(p) => {
                lost_checks = 0;
                Some(p)
            }
            Next::Lost => {
                lost_checks += 1;
                if lost_checks < 3 && !stopped_seen {
                    None // mid-rotation, most likely: look again shortly
                } else {
                    // Deleted under us: go on with the oldest file left.
                    tracing::warn!(path = %path.display(), "json-file log rotated away before it was read; some lines are lost");
                    Some(oldest(path))
                }
            }
        };
        if let Some(next) = next {
            if !rotation_seen {
                rotation_seen = true;
                continue;
            }
            match tokio::fs::File::open(&next).await {
                Ok(f) => {
                    let new_ino = f.metadata().await.map_err(|e| io_err(&next, e))?.ino();
                    // Still the successor? A rotation between the lookup and the open would
                    // have given us a newer file (skipping one): then look again.
                    let still = match next_file(path, ino) {
                        Next::File(p) => ino_of(&p) == Some(new_ino),
                        Next::Current | Next::Lost => lost_checks >= 3 || stopped_seen,
                    };
                    if new_ino != ino && still {
                        // A partial line at the end of a rotated file is dropped (the writer
                        // only rotates between entries).
                        buf.clear();
                        file = f;
                        ino = new_ino;
                        current = next;
                        stopped_seen = false;
                        rotation_seen = false;
                        lost_checks = 0;
                        continue;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // mid-rotation
                Err(e) => return Err(io_err(&next, e)),
            }
        }
        if stopped_seen {
            return Ok(());
        }
        if last_alive_check.is_none_or(|t| t.elapsed() >= ALIVE_EVERY) {
            last_alive_check = Some(tokio::time::Instant::now());
            match alive().await {
                Ok(true) => {}
                // The engine did not answer: keep following (its files are still there).
                Err(e) if !e.is_not_found() => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot inspect the container; still following its log");
                }
                Ok(false) | Err(_) => stopped_seen = true,
            }
        }
        tokio::time::sleep(POLL).await;
        if tx.is_closed() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn entry(i: usize, stream: &str) -> String {
        format!(
            "{{\"log\":\"line {i} \\\"q\\\"\\n\",\"stream\":\"{stream}\",\"time\":\"2026-11-23T01:00:{:02}.{:09}Z\"}}\n",
            i / 1000 % 60,
            i % 1000
        )
    }

    fn append(path: &Path, from: usize, to: usize) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in from..to {
            f.write_all(entry(i, if i % 2 == 0 { "stdout" } else { "stderr" }).as_bytes())
                .unwrap();
        }
    }

    /// Docker's rotation: `.k` → `.k+1`, current → `.1`, new current.
    fn rotate(path: &Path, max_files: u32) {
        for k in (1..max_files).rev() {
            let from = PathBuf::from(format!("{}.{k}", path.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}.{}", path.display(), k + 1));
                std::fs::rename(from, to).unwrap();
            }
        }
        std::fs::rename(path, format!("{}.1", path.display())).unwrap();
        std::fs::File::create(path).unwrap();
    }

    fn alive_flag() -> (Arc<AtomicBool>, Alive) {
        let flag = Arc::new(AtomicBool::new(true));
        let f = flag.clone();
        let alive: Alive = Box::new(move || {
            let v = f.load(Ordering::SeqCst);
            Box::pin(async move { Ok(v) })
        });
        (flag, alive)
    }

    async fn collect(mut rx: mpsc::Receiver<Result<Vec<LogLine>>>) -> Vec<LogLine> {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend(chunk.unwrap());
        }
        out
    }

    fn numbers(lines: &[LogLine]) -> Vec<usize> {
        lines
            .iter()
            .map(|l| {
                l.line
                    .strip_prefix("line ")
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn entries_parse_like_the_api_stream() {
        let l = parse_entry(entry(7, "stderr").trim_end().as_bytes()).unwrap();
        assert_eq!(l.line, "line 7 \"q\"");
        assert_eq!(l.source, LogSource::Stderr);
        assert!(l.timestamp.is_some());
        let partial =
            parse_entry(br#"{"log":"no newline","stream":"stdout","time":"2026-11-23T01:00:00Z"}"#)
                .unwrap();
        assert_eq!(partial.line, "no newline");
        assert!(parse_entry(b"not json").is_none());
    }

    #[tokio::test]
    async fn follows_across_rotations_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        append(&path, 0, 100);
        rotate(&path, 10);
        append(&path, 100, 200);
        let (flag, alive) = alive_flag();
        let rx = follow(path.clone(), None, true, true, alive);
        let writer = {
            let path = path.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                for round in 0..5 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let base = 200 + round * 100;
                    append(&path, base, base + 50);
                    // Sometimes two rotations before the reader gets there.
                    rotate(&path, 10);
                    if round % 2 == 0 {
                        append(&path, base + 50, base + 100);
                    } else {
                        append(&path, base + 50, base + 75);
                        rotate(&path, 10);
                        append(&path, base + 75, base + 100);
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                flag.store(false, Ordering::SeqCst);
            })
        };
        let got = tokio::time::timeout(Duration::from_secs(10), collect(rx))
            .await
            .expect("the stream ends after the container stops");
        writer.await.unwrap();
        assert_eq!(numbers(&got), (0..700).collect::<Vec<_>>());
        assert_eq!(got[1].source, LogSource::Stderr);
    }

    #[tokio::test]
    async fn since_and_stream_selection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        append(&path, 0, 3000);
        let (_flag, alive) = alive_flag();
        let (flag2, alive2) = alive_flag();
        flag2.store(false, Ordering::SeqCst);
        drop(alive);
        let since = parse_rfc3339("2026-11-23T01:00:02.000000000Z");
        let got = collect(follow(path, since, true, false, alive2)).await;
        assert_eq!(numbers(&got), (2000..3000).step_by(2).collect::<Vec<_>>());
    }
}
