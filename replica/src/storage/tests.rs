use super::*;
use crate::command::{Command, SlotValue, View};
use crate::paxos::Ballot;
use proptest::prelude::*;
use std::io::Seek;

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "concoord-storage-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn accepted(slot: u64) -> Record {
    Record::Accepted {
        slot,
        ballot: Ballot {
            round: 1,
            leader: 1,
        },
        value: SlotValue::Batch(vec![Command::ExpireSession(slot)]),
    }
}

#[test]
fn records_identity_and_snapshots_survive_a_reopen() {
    let dir = tempdir("reopen");
    let mut o = Storage::open(&dir).unwrap();
    assert!(o.identity.is_none() && o.durable == Durable::default());
    let ident = Identity {
        id: 3,
        addr: "a:1".into(),
        genesis: View::founded_by("a:1"),
    };
    o.storage.save_identity(&ident).unwrap();
    for slot in 0..10 {
        o.storage.append(&accepted(slot)).unwrap();
    }
    o.storage.sync().unwrap();
    drop(o);

    let mut o = Storage::open(&dir).unwrap();
    assert_eq!(o.identity.as_ref(), Some(&ident));
    assert_eq!(o.durable.records.len(), 10);
    assert_eq!(o.durable.records[3], accepted(3));
    let snap = Snapshot {
        slot: 10,
        view: View::founded_by("a:1"),
        state: vec![1, 2, 3],
    };
    o.storage
        .save_snapshot(
            &snap,
            &[Record::Promised(Ballot {
                round: 2,
                leader: 1,
            })],
        )
        .unwrap();
    o.storage.append(&accepted(10)).unwrap();
    o.storage.sync().unwrap();
    drop(o);

    let o = Storage::open(&dir).unwrap();
    assert_eq!(o.durable.snapshot, Some(snap));
    assert_eq!(
        o.durable.records,
        vec![
            Record::Promised(Ballot {
                round: 2,
                leader: 1
            }),
            accepted(10)
        ]
    );
    assert_eq!(
        list_segments(&dir).unwrap().len(),
        1,
        "old segments are removed"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_final_record_is_cut_off_and_the_rest_kept() {
    let dir = tempdir("torn");
    let mut o = Storage::open(&dir).unwrap();
    for slot in 0..5 {
        o.storage.append(&accepted(slot)).unwrap();
    }
    o.storage.sync().unwrap();
    drop(o);
    // A crash in the middle of writing a sixth record.
    let seg = list_segments(&dir).unwrap()[0].1.clone();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0, 0, 0, 50, 1, 2, 3, 4, 9, 9]).unwrap();
    drop(f);
    let o = Storage::open(&dir).unwrap();
    assert_eq!(o.durable.records.len(), 5);
    assert_eq!(o.truncated_tail, Some(10));
    drop(o);
    // The cut is permanent and appending continues cleanly.
    let mut o = Storage::open(&dir).unwrap();
    assert_eq!(o.truncated_tail, None);
    o.storage.append(&accepted(5)).unwrap();
    o.storage.sync().unwrap();
    drop(o);
    assert_eq!(Storage::open(&dir).unwrap().durable.records.len(), 6);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_checksum_failure_in_the_final_record_is_a_torn_write() {
    let dir = tempdir("lastcrc");
    let mut o = Storage::open(&dir).unwrap();
    for slot in 0..3 {
        o.storage.append(&accepted(slot)).unwrap();
    }
    o.storage.sync().unwrap();
    drop(o);
    let seg = list_segments(&dir).unwrap()[0].1.clone();
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let o = Storage::open(&dir).unwrap();
    assert_eq!(o.durable.records.len(), 2);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_zero_filled_tail_after_power_loss_is_a_torn_write() {
    let mut bytes = Vec::new();
    for slot in 0..3 {
        let payload = rmp_serde::to_vec(&accepted(slot)).unwrap();
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&crc32(&payload).to_be_bytes());
        bytes.extend_from_slice(&payload);
    }
    let good = bytes.len() as u64;
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    let (records, torn) = decode_records(&bytes).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(torn, Some(good));
    // An empty record followed by real data is damage, not a torn tail.
    let mut damaged = bytes[..good as usize].to_vec();
    damaged.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 7, 7]);
    assert!(decode_records(&damaged).is_err());
}

#[test]
fn damage_before_the_end_refuses_to_start() {
    let dir = tempdir("corrupt");
    let mut o = Storage::open(&dir).unwrap();
    for slot in 0..5 {
        o.storage.append(&accepted(slot)).unwrap();
    }
    o.storage.sync().unwrap();
    drop(o);
    let seg = list_segments(&dir).unwrap()[0].1.clone();
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.seek(std::io::SeekFrom::Start(12)).unwrap();
    f.write_all(&[0xde, 0xad]).unwrap();
    drop(f);
    let err = Storage::open(&dir).err().expect("damage must be refused");
    let text = err.to_string();
    assert!(
        text.contains("damaged") && text.contains("rejoin"),
        "{text}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_snapshot_refuses_to_start() {
    let dir = tempdir("badsnap");
    let mut o = Storage::open(&dir).unwrap();
    let snap = Snapshot {
        slot: 1,
        view: View::default(),
        state: vec![7; 100],
    };
    o.storage.save_snapshot(&snap, &[]).unwrap();
    drop(o);
    let p = dir.join("snapshot");
    let mut bytes = fs::read(&p).unwrap();
    bytes[50] ^= 1;
    fs::write(&p, bytes).unwrap();
    assert!(matches!(
        Storage::open(&dir),
        Err(StorageError::Corrupt { .. })
    ));
    let _ = fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The WAL reader never panics, whatever the bytes.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_records(&bytes);
    }

    /// Any prefix of a valid log decodes to a prefix of its records, with at most the
    /// last one reported torn: a crash mid-write never loses an earlier record.
    #[test]
    fn every_prefix_of_a_log_keeps_its_complete_records(n in 1usize..20, cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for slot in 0..n as u64 {
            let payload = rmp_serde::to_vec(&accepted(slot)).unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
            ends.push(bytes.len());
        }
        let cut = cut.index(bytes.len() + 1);
        let (records, torn) = decode_records(&bytes[..cut]).unwrap();
        let complete = ends.iter().filter(|e| **e <= cut).count();
        prop_assert_eq!(records.len(), complete);
        prop_assert_eq!(torn.is_some(), !ends.contains(&cut) && cut != 0);
    }
}
