//! Content-addressed blob storage on disk, upload sessions, and garbage collection.
//!
//! Layout under the store's directory:
//! - `blobs/sha256/<first two hex>/<hex>`: complete, verified blobs (immutable once there);
//! - `uploads/<uuid>/data` and `uploads/<uuid>/info.json`: upload sessions in progress.
//!
//! A blob only ever appears by `rename` of a fully written, fsynced and digest-verified upload
//! file, followed by an fsync of its directory, so a crash or an interrupted request can leave
//! an orphaned upload (collected later) but never a partial or wrong blob.

use crate::{Digest, Hasher, RegistryError, Result};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Where an upload session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The session id (a UUID).
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

/// What a garbage-collection pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub uploads_removed: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SessionInfo {
    repository: String,
}

struct Session {
    repository: String,
    /// `None` after a restart: the data on disk is re-hashed before the next use.
    hasher: Option<Hasher>,
    offset: u64,
}

type SessionHandle = Arc<tokio::sync::Mutex<Session>>;

/// The blob store. Cheap to share behind an `Arc`; every method is safe to call concurrently
/// (two uploads of the same content race harmlessly: the second rename replaces identical bytes).
pub struct BlobStore {
    root: PathBuf,
    sessions: Mutex<HashMap<String, SessionHandle>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        RegistryError::io(
            PathBuf::new(),
            std::io::Error::other(format!("blocking task failed: {e}")),
        )
    })?
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| RegistryError::io(dir, e))
}

fn hash_file(path: &Path) -> Result<Hasher> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| RegistryError::io(path, e))?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| RegistryError::io(path, e))?;
        if n == 0 {
            return Ok(h);
        }
        h.update(&buf[..n]);
    }
}

impl BlobStore {
    /// Opens (creating if needed) a blob store in `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in [root.join("blobs").join("sha256"), root.join("uploads")] {
            std::fs::create_dir_all(&d).map_err(|e| RegistryError::io(&d, e))?;
        }
        Ok(Self {
            root,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join("sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// The size of blob `d`, if it is stored.
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        match tokio::fs::metadata(&p).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(p, e)),
        }
    }

    /// Marks blob `d` as recently used, so a garbage collection with a grace period keeps it
    /// (a push that found the blob present will reference it in a moment). Missing blobs are
    /// ignored.
    pub async fn touch(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        blocking(
            move || match std::fs::File::options().write(true).open(&p) {
                Ok(f) => f
                    .set_modified(SystemTime::now())
                    .map_err(|e| RegistryError::io(&p, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(RegistryError::io(&p, e)),
            },
        )
        .await
    }

    /// Opens blob `d` for reading; returns the file and its size.
    pub async fn open_blob(&self, d: &Digest) -> Result<(tokio::fs::File, u64)> {
        let p = self.blob_path(d);
        let f = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::BlobUnknown(d.to_string()))
            }
            Err(e) => return Err(RegistryError::io(p, e)),
        };
        let len = f
            .metadata()
            .await
            .map_err(|e| RegistryError::io(&p, e))?
            .len();
        Ok((f, len))
    }

    /// Reads a whole (small) blob, refusing ones larger than `limit`.
    pub async fn read(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let (_, len) = self.open_blob(d).await?;
        if len > limit {
            return Err(RegistryError::SizeInvalid {
                declared: limit,
                actual: len,
            });
        }
        let p = self.blob_path(d);
        tokio::fs::read(&p)
            .await
            .map_err(|e| RegistryError::io(p, e))
    }

    /// Starts an upload session for `repository`; returns its id.
    pub async fn start_upload(&self, repository: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.upload_dir(&id);
        let info = serde_json::to_vec(&SessionInfo {
            repository: repository.to_string(),
        })
        .unwrap_or_default();
        let d2 = dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&d2).map_err(|e| RegistryError::io(&d2, e))?;
            std::fs::write(d2.join("data"), b"").map_err(|e| RegistryError::io(&d2, e))?;
            std::fs::write(d2.join("info.json"), info).map_err(|e| RegistryError::io(&d2, e))
        })
        .await?;
        let s = Session {
            repository: repository.to_string(),
            hasher: Some(Hasher::new()),
            offset: 0,
        };
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(s)));
        }
        tracing::debug!(upload = %id, repository, "upload started");
        Ok(id)
    }

    /// Finds a session (in memory, or on disk after a restart) belonging to `repository`.
    async fn session(&self, id: &str, repository: &str) -> Result<SessionHandle> {
        let unknown = || RegistryError::UploadUnknown(id.to_string());
        // Only canonical UUIDs reach the file system (no path tricks).
        let canonical = uuid::Uuid::parse_str(id)
            .map_err(|_| unknown())?
            .hyphenated()
            .to_string();
        if canonical != id {
            return Err(unknown());
        }
        let cached = self.sessions.lock().ok().and_then(|m| m.get(id).cloned());
        let handle = match cached {
            Some(h) => h,
            None => {
                let dir = self.upload_dir(id);
                let info = match tokio::fs::read(dir.join("info.json")).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                    Err(e) => return Err(RegistryError::io(dir, e)),
                };
                let info: SessionInfo = serde_json::from_slice(&info).map_err(|_| unknown())?;
                let offset = match tokio::fs::metadata(dir.join("data")).await {
                    Ok(m) => m.len(),
                    Err(_) => return Err(unknown()),
                };
                let h = Arc::new(tokio::sync::Mutex::new(Session {
                    repository: info.repository,
                    hasher: None,
                    offset,
                }));
                match self.sessions.lock() {
                    Ok(mut m) => m.entry(id.to_string()).or_insert(h).clone(),
                    Err(_) => h,
                }
            }
        };
        if handle.lock().await.repository != repository {
            return Err(unknown());
        }
        Ok(handle)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(id);
        }
    }

    /// Where upload `id` of `repository` stands.
    pub async fn upload_status(&self, id: &str, repository: &str) -> Result<UploadStatus> {
        let h = self.session(id, repository).await?;
        let s = h.lock().await;
        if !self.upload_dir(id).exists() {
            return Err(RegistryError::UploadUnknown(id.to_string()));
        }
        Ok(UploadStatus {
            id: id.to_string(),
            offset: s.offset,
        })
    }

    /// Appends `body` to upload `id`. `start`, when the client said where its chunk starts
    /// (`Content-Range`), must equal the current offset. If the body fails midway the upload is
    /// rolled back to where it stood before this call.
    pub async fn append<S, E>(
        &self,
        id: &str,
        repository: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let h = self.session(id, repository).await?;
        let mut s = h.lock().await;
        let data = self.upload_dir(id).join("data");
        if !data.exists() {
            return Err(RegistryError::UploadUnknown(id.to_string()));
        }
        if let Some(start) = start {
            if start != s.offset {
                return Err(RegistryError::RangeInvalid {
                    offset: s.offset,
                    start,
                });
            }
        }
        if s.hasher.is_none() {
            let d = data.clone();
            s.hasher = Some(blocking(move || hash_file(&d)).await?);
        }
        let before = s.offset;
        let saved = s.hasher.clone().unwrap_or_default();
        let mut hasher = saved.clone();
        let result: Result<u64> = async {
            let mut f = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&data)
                .await
                .map_err(|e| RegistryError::io(&data, e))?;
            let mut body = std::pin::pin!(body);
            let mut n = before;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Body(std::io::Error::other(e)))?;
                hasher.update(&chunk);
                f.write_all(&chunk)
                    .await
                    .map_err(|e| RegistryError::io(&data, e))?;
                n += chunk.len() as u64;
            }
            f.flush().await.map_err(|e| RegistryError::io(&data, e))?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => {
                s.offset = n;
                s.hasher = Some(hasher);
                Ok(UploadStatus {
                    id: id.to_string(),
                    offset: n,
                })
            }
            Err(e) => {
                // Roll back to the last complete chunk.
                if let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(&data).await {
                    let _ = f.set_len(before).await;
                }
                s.offset = before;
                s.hasher = Some(saved);
                Err(e)
            }
        }
    }

    /// Completes upload `id`: the content must hash to `expected`. On success the blob is
    /// durable and visible and its size is returned; on a digest mismatch the upload is
    /// discarded. Either way the session is gone.
    pub async fn finish(&self, id: &str, repository: &str, expected: &Digest) -> Result<u64> {
        let h = self.session(id, repository).await?;
        let mut s = h.lock().await;
        let dir = self.upload_dir(id);
        let data = dir.join("data");
        if !data.exists() {
            return Err(RegistryError::UploadUnknown(id.to_string()));
        }
        let hasher = match s.hasher.take() {
            Some(h) => h,
            None => {
                let d = data.clone();
                blocking(move || hash_file(&d)).await?
            }
        };
        let actual = hasher.finish();
        let size = s.offset;
        if &actual != expected {
            drop(s);
            self.discard(id).await;
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let target = self.blob_path(expected);
        let d2 = dir.clone();
        blocking(move || {
            let f = std::fs::File::open(&data).map_err(|e| RegistryError::io(&data, e))?;
            f.sync_all().map_err(|e| RegistryError::io(&data, e))?;
            let parent = target.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(|e| RegistryError::io(parent, e))?;
            std::fs::rename(&data, &target).map_err(|e| RegistryError::io(&target, e))?;
            fsync_dir(parent)?;
            let _ = std::fs::remove_dir_all(&d2);
            Ok(())
        })
        .await?;
        drop(s);
        self.forget(id);
        tracing::debug!(upload = %id, digest = %expected, size, "blob stored");
        Ok(size)
    }

    async fn discard(&self, id: &str) {
        self.forget(id);
        let dir = self.upload_dir(id);
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }

    /// Abandons upload `id`.
    pub async fn cancel(&self, id: &str, repository: &str) -> Result<()> {
        let h = self.session(id, repository).await?;
        let _guard = h.lock().await;
        self.discard(id).await;
        Ok(())
    }

    /// Stores a whole blob from a stream in one go (a monolithic upload), verifying it hashes to
    /// `expected` and, if given, has `declared_len` bytes.
    pub async fn put<S, E>(
        &self,
        repository: &str,
        expected: &Digest,
        declared_len: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let id = self.start_upload(repository).await?;
        let st = match self.append(&id, repository, None, body).await {
            Ok(st) => st,
            Err(e) => {
                self.discard(&id).await;
                return Err(e);
            }
        };
        if let Some(n) = declared_len {
            if n != st.offset {
                self.discard(&id).await;
                return Err(RegistryError::SizeInvalid {
                    declared: n,
                    actual: st.offset,
                });
            }
        }
        self.finish(&id, repository, expected).await
    }

    /// Stores `bytes` as a blob (small content such as a manifest), verifying its digest.
    pub async fn put_bytes(
        &self,
        repository: &str,
        expected: &Digest,
        bytes: Bytes,
    ) -> Result<u64> {
        let s = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        self.put(repository, expected, None, s).await
    }

    /// Removes every blob not in `keep` whose file is older than `grace` (so blobs of a push in
    /// progress — uploaded, not yet referenced by a manifest — survive), and upload sessions
    /// untouched for `upload_ttl`. Blocking: run it on a blocking thread.
    pub fn gc(
        &self,
        keep: &HashSet<Digest>,
        grace: Duration,
        upload_ttl: Duration,
    ) -> Result<GcReport> {
        let now = SystemTime::now();
        let older_than = |p: &Path, age: Duration| -> bool {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= age)
                .unwrap_or(false)
        };
        let mut report = GcReport::default();
        let base = self.root.join("blobs").join("sha256");
        let shards = std::fs::read_dir(&base).map_err(|e| RegistryError::io(&base, e))?;
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let name = f.file_name().to_string_lossy().into_owned();
                let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                    continue;
                };
                if keep.contains(&d) || !older_than(&path, grace) {
                    continue;
                }
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        report.blobs_removed += 1;
                        report.bytes_freed += len;
                        tracing::debug!(digest = %d, "blob garbage-collected");
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove blob")
                    }
                }
            }
        }
        let uploads = self.root.join("uploads");
        let entries = std::fs::read_dir(&uploads).map_err(|e| RegistryError::io(&uploads, e))?;
        for u in entries.flatten() {
            let data = u.path().join("data");
            let probe = if data.exists() { data } else { u.path() };
            if older_than(&probe, upload_ttl) {
                let id = u.file_name().to_string_lossy().into_owned();
                self.forget(&id);
                if std::fs::remove_dir_all(u.path()).is_ok() {
                    report.uploads_removed += 1;
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::copy_from_slice(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(t.path().join("registry")).unwrap();
        (t, s)
    }

    #[tokio::test]
    async fn monolithic_put_and_read() {
        let (_t, s) = store();
        let d = Digest::of(b"hello world");
        assert_eq!(s.stat(&d).await.unwrap(), None);
        let n = s
            .put("repo", &d, Some(11), chunks(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(n, 11);
        assert_eq!(s.stat(&d).await.unwrap(), Some(11));
        assert_eq!(s.read(&d, 100).await.unwrap(), b"hello world");
        // Idempotent: the same content again.
        s.put_bytes("other", &d, Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert!(std::fs::read_dir(s.root().join("uploads"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn wrong_digest_leaves_nothing() {
        let (_t, s) = store();
        let d = Digest::of(b"expected");
        let e = s
            .put("repo", &d, None, chunks(&[b"other"]))
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::DigestMismatch { .. }));
        assert_eq!(s.stat(&d).await.unwrap(), None);
        assert_eq!(s.stat(&Digest::of(b"other")).await.unwrap(), None);
        assert!(std::fs::read_dir(s.root().join("uploads"))
            .unwrap()
            .next()
            .is_none());
        let e = s
            .put("repo", &Digest::of(b"abc"), Some(4), chunks(&[b"abc"]))
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            RegistryError::SizeInvalid {
                declared: 4,
                actual: 3
            }
        ));
    }

    #[tokio::test]
    async fn chunked_upload_with_range_checks() {
        let (_t, s) = store();
        let id = s.start_upload("repo").await.unwrap();
        assert_eq!(
            s.append(&id, "repo", Some(0), chunks(&[b"abc"]))
                .await
                .unwrap()
                .offset,
            3
        );
        let e = s
            .append(&id, "repo", Some(5), chunks(&[b"x"]))
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            RegistryError::RangeInvalid {
                offset: 3,
                start: 5
            }
        ));
        assert!(matches!(
            s.append(&id, "other-repo", None, chunks(&[b"x"])).await,
            Err(RegistryError::UploadUnknown(_))
        ));
        assert_eq!(
            s.append(&id, "repo", Some(3), chunks(&[b"def"]))
                .await
                .unwrap()
                .offset,
            6
        );
        assert_eq!(s.upload_status(&id, "repo").await.unwrap().offset, 6);
        let d = Digest::of(b"abcdef");
        assert_eq!(s.finish(&id, "repo", &d).await.unwrap(), 6);
        assert_eq!(s.read(&d, 10).await.unwrap(), b"abcdef");
        assert!(matches!(
            s.upload_status(&id, "repo").await,
            Err(RegistryError::UploadUnknown(_))
        ));
    }

    #[tokio::test]
    async fn interrupted_chunk_rolls_back() {
        let (_t, s) = store();
        let id = s.start_upload("repo").await.unwrap();
        s.append(&id, "repo", None, chunks(&[b"abc"]))
            .await
            .unwrap();
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"zzz")),
            Err(std::io::Error::other("connection reset")),
        ]);
        assert!(matches!(
            s.append(&id, "repo", None, broken).await,
            Err(RegistryError::Body(_))
        ));
        assert_eq!(s.upload_status(&id, "repo").await.unwrap().offset, 3);
        s.append(&id, "repo", None, chunks(&[b"def"]))
            .await
            .unwrap();
        s.finish(&id, "repo", &Digest::of(b"abcdef")).await.unwrap();
    }

    #[tokio::test]
    async fn sessions_survive_a_restart() {
        let t = tempfile::tempdir().unwrap();
        let id = {
            let s = BlobStore::open(t.path()).unwrap();
            let id = s.start_upload("repo").await.unwrap();
            s.append(&id, "repo", None, chunks(&[b"part one,"]))
                .await
                .unwrap();
            id
        };
        let s = BlobStore::open(t.path()).unwrap();
        assert_eq!(s.upload_status(&id, "repo").await.unwrap().offset, 9);
        s.append(&id, "repo", Some(9), chunks(&[b" part two"]))
            .await
            .unwrap();
        s.finish(&id, "repo", &Digest::of(b"part one, part two"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn bogus_upload_ids_are_unknown() {
        let (_t, s) = store();
        for id in [
            "",
            "..",
            "../../etc",
            "not-a-uuid",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(matches!(
                s.upload_status(id, "repo").await,
                Err(RegistryError::UploadUnknown(_))
            ));
        }
    }

    #[tokio::test]
    async fn gc_keeps_referenced_and_young_blobs() {
        let (_t, s) = store();
        let keep = Digest::of(b"keep");
        let drop_ = Digest::of(b"drop");
        s.put_bytes("r", &keep, Bytes::from_static(b"keep"))
            .await
            .unwrap();
        s.put_bytes("r", &drop_, Bytes::from_static(b"drop"))
            .await
            .unwrap();
        let young = s.gc(
            &HashSet::new(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        assert_eq!(young.unwrap().blobs_removed, 0);
        let stale = s.start_upload("r").await.unwrap();
        let keep_set: HashSet<Digest> = [keep.clone()].into_iter().collect();
        let r = s.gc(&keep_set, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(r.blobs_removed, 1);
        assert_eq!(r.bytes_freed, 4);
        assert_eq!(r.uploads_removed, 1);
        assert_eq!(s.stat(&keep).await.unwrap(), Some(4));
        assert_eq!(s.stat(&drop_).await.unwrap(), None);
        assert!(s.upload_status(&stale, "r").await.is_err());
    }

    #[tokio::test]
    async fn concurrent_puts_of_the_same_blob() {
        let (_t, s) = store();
        let s = Arc::new(s);
        let data = vec![7u8; 100_000];
        let d = Digest::of(&data);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, d, data) = (s.clone(), d.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let parts: Vec<_> = data
                    .chunks(7000)
                    .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                    .collect();
                s.put("r", &d, None, futures::stream::iter(parts)).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 100_000);
        }
        assert_eq!(s.read(&d, 1 << 20).await.unwrap(), data);
    }
}
