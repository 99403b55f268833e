//! Stable storage for `-w`: a write-ahead log of consensus records, snapshots of the
//! objects, and the replica's identity.
//!
//! Layout of the data directory:
//! - `identity`: who this replica is (id, address, the group's founding view);
//! - `snapshot`: the latest snapshot, replaced atomically (write, fsync, rename);
//! - `wal-NNNNNNNNNN.log`: log segments; a snapshot starts a new segment and removes the
//!   older ones.
//!
//! Every record and file body is checksummed (CRC-32 over the payload). A record cut short
//! at the very end of the newest segment is a write that never completed (nothing was
//! acknowledged for it) and is truncated away; damage anywhere else refuses to start,
//! because replaying around it could forget a promise.

use crate::command::{ReplicaId, View};
use crate::paxos::{Durable, Record, Snapshot};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const SNAPSHOT_MAGIC: &[u8; 8] = b"CCSNAP01";
const IDENTITY_MAGIC: &[u8; 8] = b"CCIDNT01";
/// A record larger than this is damage, not data (frames are capped at 16 MiB).
const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is damaged at byte {offset}: {reason}; this replica's disk cannot be trusted: \
         move the data directory away and restart with -b to rejoin as a new member"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("cannot encode a record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

impl StorageError {
    /// Whether the disk (or quota) is full.
    pub fn is_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull
            || source.raw_os_error() == Some(28) /* ENOSPC */ || source.raw_os_error() == Some(122) /* EDQUOT */)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Who this replica is: kept so that a restart with its disk resumes the same identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Identity {
    pub id: ReplicaId,
    pub addr: String,
    /// The view in force at slot 0 of this replica's log.
    pub genesis: View,
}

/// What `open` found in a data directory.
pub struct Opened {
    pub storage: Storage,
    pub identity: Option<Identity>,
    pub durable: Durable,
    /// Bytes of a torn final record that were cut off, if any.
    pub truncated_tail: Option<u64>,
}

pub struct Storage {
    dir: PathBuf,
    segment_no: u64,
    segment: BufWriter<File>,
    /// Bytes written since the last sync.
    dirty: bool,
}

impl Storage {
    /// Opens (creating if needed) a data directory and reads back what it holds.
    pub fn open(dir: &Path) -> Result<Opened, StorageError> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let identity = read_file::<Identity>(&dir.join("identity"), IDENTITY_MAGIC)?;
        let snapshot = read_file::<Snapshot>(&dir.join("snapshot"), SNAPSHOT_MAGIC)?;
        let segments = list_segments(dir)?;
        let mut records = Vec::new();
        let mut truncated_tail = None;
        for (i, (_, path)) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if let Some(cut) = read_segment(path, last, &mut records)? {
                truncated_tail = Some(cut);
            }
        }
        let segment_no = segments.last().map_or(1, |(n, _)| *n);
        let path = segment_path(dir, segment_no);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        if segments.is_empty() {
            sync_dir(dir)?;
        }
        Ok(Opened {
            storage: Storage {
                dir: dir.to_path_buf(),
                segment_no,
                segment: BufWriter::with_capacity(1 << 20, file),
                dirty: false,
            },
            identity,
            durable: Durable { snapshot, records },
            truncated_tail,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records who this replica is; done once, when it founds or joins a group.
    pub fn save_identity(&mut self, identity: &Identity) -> Result<(), StorageError> {
        write_file_atomically(&self.dir, "identity", IDENTITY_MAGIC, identity)
    }

    /// Queues a record; durable after the next [`Storage::sync`].
    pub fn append(&mut self, record: &Record) -> Result<(), StorageError> {
        let payload = rmp_serde::to_vec(record)?;
        let path = segment_path(&self.dir, self.segment_no);
        let len = u32::try_from(payload.len()).map_err(|_| StorageError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: format!("record of {} bytes is too large", payload.len()),
        })?;
        let crc = crc32(&payload);
        self.segment
            .write_all(&len.to_be_bytes())
            .and_then(|_| self.segment.write_all(&crc.to_be_bytes()))
            .and_then(|_| self.segment.write_all(&payload))
            .map_err(io_err("write", &path))?;
        self.dirty = true;
        Ok(())
    }

    /// Makes every appended record durable with one flush and one fdatasync (group commit).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if !self.dirty {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.segment_no);
        self.segment.flush().map_err(io_err("write", &path))?;
        self.segment
            .get_ref()
            .sync_data()
            .map_err(io_err("fsync", &path))?;
        self.dirty = false;
        Ok(())
    }

    /// Saves a snapshot, then starts a new log segment holding `checkpoint` and removes the
    /// older segments. A crash at any point leaves a directory that recovers correctly:
    /// replaying records older than the snapshot changes nothing.
    pub fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        checkpoint: &[Record],
    ) -> Result<(), StorageError> {
        self.sync()?;
        write_file_atomically(&self.dir, "snapshot", SNAPSHOT_MAGIC, snapshot)?;
        let next = self.segment_no + 1;
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let old = self.segment_no;
        self.segment = BufWriter::with_capacity(1 << 20, file);
        self.segment_no = next;
        for r in checkpoint {
            self.append(r)?;
        }
        self.dirty = true;
        self.sync()?;
        sync_dir(&self.dir)?;
        for (n, p) in list_segments(&self.dir)? {
            if n <= old {
                fs::remove_file(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(())
    }

    /// Bytes the data directory holds now (for benchmarks and status).
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("wal-{n:010}.log"))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("wal-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push((n, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads one segment's records into `out`. In the newest segment a torn final record is cut
/// off (returns how many bytes); any other damage is an error.
fn read_segment(
    path: &Path,
    newest: bool,
    out: &mut Vec<Record>,
) -> Result<Option<u64>, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err("read", path))?;
    let (records, torn_at) =
        decode_records(&bytes).map_err(|(offset, reason)| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        })?;
    out.extend(records);
    let Some(offset) = torn_at else {
        return Ok(None);
    };
    if !newest {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: "a record is cut short in an older segment".into(),
        });
    }
    let cut = bytes.len() as u64 - offset;
    tracing::warn!(
        "{}: cutting off a torn final record ({cut} bytes at offset {offset}); it was never acknowledged",
        path.display()
    );
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    f.set_len(offset).map_err(io_err("truncate", path))?;
    f.sync_all().map_err(io_err("fsync", path))?;
    Ok(Some(cut))
}

/// Decodes a segment's bytes. Returns the records and, when the data ends in a torn record
/// (cut short, or a checksum failure in the very last record), where that record starts.
/// Damage followed by more data is an error `(offset, reason)`.
pub fn decode_records(bytes: &[u8]) -> Result<(Vec<Record>, Option<u64>), (u64, String)> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            return Ok((records, Some(at as u64)));
        }
        // After a power loss the unsynced end of a file may read back as zeros: that is a
        // write that never completed, not damage.
        if rest.iter().all(|b| *b == 0) {
            return Ok((records, Some(at as u64)));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 {
            return Err((at as u64, "empty record".into()));
        }
        if len > MAX_RECORD_BYTES {
            return Err((at as u64, format!("impossible record length {len}")));
        }
        let end = 8 + len as usize;
        if rest.len() < end {
            return Ok((records, Some(at as u64)));
        }
        let payload = &rest[8..end];
        let last = rest.len() == end;
        if crc32(payload) != crc {
            if last {
                return Ok((records, Some(at as u64)));
            }
            return Err((at as u64, "checksum mismatch".into()));
        }
        match rmp_serde::from_slice::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(e) => return Err((at as u64, format!("undecodable record: {e}"))),
        }
        at += end;
    }
    Ok((records, None))
}

fn read_file<T: DeserializeOwned>(path: &Path, magic: &[u8; 8]) -> Result<Option<T>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < 20 || &bytes[..8] != magic {
        return Err(corrupt("not a ConCoord file of this kind"));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[8..16]);
    let len = u64::from_be_bytes(len8) as usize;
    let crc = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let body = bytes
        .get(20..)
        .filter(|b| b.len() == len)
        .ok_or_else(|| corrupt("wrong length"))?;
    if crc32(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    rmp_serde::from_slice(body)
        .map(Some)
        .map_err(|e| corrupt(&format!("undecodable: {e}")))
}

/// Writes `name` via a temporary file, fsync and rename, so a crash leaves the old or the
/// new version, never half of one.
fn write_file_atomically<T: Serialize>(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    value: &T,
) -> Result<(), StorageError> {
    let body = rmp_serde::to_vec(value)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(magic)
        .and_then(|_| f.write_all(&(body.len() as u64).to_be_bytes()))
        .and_then(|_| f.write_all(&crc32(&body).to_be_bytes()))
        .and_then(|_| f.write_all(&body))
        .and_then(|_| f.sync_all())
        .map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests;
