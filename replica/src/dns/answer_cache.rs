//! Encoded UDP answers of the current zone, by question: the same question asked again gets
//! the bytes hickory encoded the first time, with the asker's ID and name spelling copied in.
//! A zone changes at most a few times a second while the same few questions arrive by the
//! thousand, so this skips decoding and encoding for nearly every query. Everything is
//! forgotten when the zone changes; only plain queries are cached (one question, no
//! compression, no records but an optional OPT), and the cache is bounded.

use super::zone::Zone;
use std::collections::HashMap;
use std::sync::Arc;

/// Different questions remembered at most; then everything is dropped and refilled (random
/// names cannot grow memory).
const MAX_ENTRIES: usize = 4096;
const HEADER_LEN: usize = 12;

#[derive(Default)]
pub struct AnswerCache {
    zone: Option<Arc<Zone>>,
    entries: HashMap<Vec<u8>, Vec<u8>>,
}

/// Where a plain query's parts are.
pub struct Plain {
    /// End of the question name (it starts right after the header).
    name_end: usize,
}

impl AnswerCache {
    /// Forgets every answer when `zone` is not the zone they were built from.
    pub fn follow(&mut self, zone: &Arc<Zone>) {
        if !self.zone.as_ref().is_some_and(|z| Arc::ptr_eq(z, zone)) {
            self.entries.clear();
            self.zone = Some(zone.clone());
        }
    }

    /// Writes the cache key of `query` into `key` (everything after the ID, the name in
    /// lower case) when the query is plain enough to share answers.
    pub fn key(query: &[u8], key: &mut Vec<u8>) -> Option<Plain> {
        let header = query.get(..HEADER_LEN)?;
        let flags = header[2];
        // A query (QR=0) with opcode QUERY, one question, no answers or authority, at most
        // one additional record (the OPT).
        let counts = [
            u16::from_be_bytes([header[4], header[5]]),
            u16::from_be_bytes([header[6], header[7]]),
            u16::from_be_bytes([header[8], header[9]]),
            u16::from_be_bytes([header[10], header[11]]),
        ];
        if flags & 0xf8 != 0 || counts[..3] != [1, 0, 0] || counts[3] > 1 {
            return None;
        }
        let mut at = HEADER_LEN;
        loop {
            let len = usize::from(*query.get(at)?);
            if len == 0 {
                at += 1;
                break;
            }
            // Compression pointers and extended labels are left to the full decoder.
            if len > 63 {
                return None;
            }
            at += 1 + len;
        }
        let name_end = at;
        if query.len() < name_end + 4 {
            return None;
        }
        key.clear();
        key.extend_from_slice(query.get(2..)?);
        if let Some(name) = key.get_mut(HEADER_LEN - 2..name_end - 2) {
            name.make_ascii_lowercase();
        }
        Some(Plain { name_end })
    }

    /// The cached answer to `query` (key from [`AnswerCache::key`]), made its own in `out`.
    pub fn answer(&self, key: &[u8], plain: &Plain, query: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(cached) = self.entries.get(key) else {
            return false;
        };
        let (Some(id), Some(name), Some(_)) = (
            query.get(..2),
            query.get(HEADER_LEN..plain.name_end),
            cached.get(..plain.name_end),
        ) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(cached);
        out[..2].copy_from_slice(id);
        out[HEADER_LEN..plain.name_end].copy_from_slice(name);
        true
    }

    /// Remembers `answer` for `key`.
    pub fn store(&mut self, key: Vec<u8>, answer: Vec<u8>) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key, answer);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[u8], counts: [u16; 4]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0]);
        for c in counts {
            q.extend_from_slice(&c.to_be_bytes());
        }
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    #[test]
    fn keys_ignore_the_id_and_the_spelling_and_only_plain_queries_have_one() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(AnswerCache::key(&query(1, b"\x01a\x02Bc\x00", [1, 0, 0, 0]), &mut a).is_some());
        assert!(AnswerCache::key(&query(2, b"\x01A\x02bc\x00", [1, 0, 0, 0]), &mut b).is_some());
        assert_eq!(a, b);
        let mut k = Vec::new();
        for bad in [
            query(1, b"\x01a\x00", [2, 0, 0, 0]),
            query(1, b"\x01a\x00", [1, 1, 0, 0]),
            query(1, b"\x01a\x00", [1, 0, 0, 2]),
            query(1, b"\xc0\x0c", [1, 0, 0, 0]),
            query(1, b"\x05ab", [1, 0, 0, 0]),
            vec![0; 11],
        ] {
            assert!(AnswerCache::key(&bad, &mut k).is_none(), "{bad:?}");
        }
        let mut response = query(9, b"\x01a\x02bc\x00", [1, 0, 0, 0]);
        response[2] |= 0x80;
        assert!(
            AnswerCache::key(&response, &mut k).is_none(),
            "answers are not questions"
        );
    }

    #[test]
    fn a_hit_carries_the_askers_id_and_spelling() {
        let mut cache = AnswerCache::default();
        let first = query(1, b"\x01a\x02bc\x00", [1, 0, 0, 0]);
        let mut key = Vec::new();
        let plain = AnswerCache::key(&first, &mut key).unwrap();
        let mut answer = first.clone();
        answer.extend_from_slice(b"records");
        cache.store(key.clone(), answer);
        let second = query(0xbeef, b"\x01A\x02bC\x00", [1, 0, 0, 0]);
        let mut key2 = Vec::new();
        let plain2 = AnswerCache::key(&second, &mut key2).unwrap();
        let mut out = Vec::new();
        assert!(cache.answer(&key2, &plain2, &second, &mut out));
        assert_eq!(&out[..2], &[0xbe, 0xef]);
        assert_eq!(&out[12..12 + 6], b"\x01A\x02bC\x00");
        assert!(out.ends_with(b"records"));
        assert!(!cache.answer(b"other", &plain, &first, &mut out));
    }
}
