//! Index segments: the positions of a run of saves, written beside the
//! log (and merged ten to one), read and checked at a cold start.

use std::sync::MutexGuard;

use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};

use super::codec::decode_object;
use super::{ObjectRecorder, MERGED_SAVES, PARALLEL_READS};
use crate::index::{Index, Segment, Str};
use annals_core::error::{Error, Result};

/// The saves whose segments a cold start reads at once: one merged
/// segment (or ten of the first level). Larger batches read a store in
/// fewer rounds, but their segments' bytes and parses are held together
/// beside the index: at a million saves, batches of 50,000 peaked at
/// 88 MB, of 10,000 at about 70 MB.
const BATCH_SAVES: u64 = 10_000;

impl ObjectRecorder {
    /// Reads the index segments that cover the log from its first save
    /// on (at each start the longest), 32 at once. The chain ends before a
    /// segment that cannot be read or parsed, or that names other saves;
    /// then at the last segment that holds what the log holds (its last
    /// save is there, with the first id, event count and token the
    /// segment says: one GET, or a few by halving when the log is not the
    /// one the segments were made from). Each segment is added whole or
    /// not at all. The saves after the chain are read instead, and the
    /// segments passed over are marked stale, to be written again.
    pub(super) fn load_segments(&self, index: &mut Index) -> Result<()> {
        let names = self.list(&self.segments).map_err(|e| self.open_error(&e))?;
        let mut ranges: Vec<(u64, u64, Path)> = names
            .iter()
            .filter_map(|path| {
                let (first, last) = path.filename()?.split_once('-')?;
                let number = |s: &str| (s.len() == 20).then(|| s.parse::<u64>().ok()).flatten();
                let (first, last) = (number(first)?, number(last)?);
                (first >= 1 && last >= first).then(|| (first, last, path.clone()))
            })
            .collect();
        ranges.sort_by_key(|&(first, last, _)| (first, std::cmp::Reverse(last)));
        let mut chain = Vec::new();
        let mut next = 1;
        for (first, last, path) in ranges {
            if first == next {
                chain.push((first, last, path));
                next = last + 1;
            }
        }
        // The longest prefix of the chain that the log holds: a segment
        // holds only if every one before it does (saves are never
        // rewritten), so the last is checked, then halves.
        // The segment checked last is kept as read, not parsed: a parse
        // is a few times its bytes, held all through the cold start.
        let mut checked: Option<(usize, bytes::Bytes)> = None;
        let mut holds_at = |k: usize| -> bool {
            let (first, last, path) = &chain[k - 1];
            let read = self.read(path).and_then(|bytes| {
                bytes.ok_or_else(|| Error::persistence(format!("reading {path}"), "it is gone"))
            });
            let holds = read.and_then(|bytes| {
                let holds = self.holds(&Self::parse_segment(path, &bytes, *first, *last)?);
                if holds {
                    checked = Some((k - 1, bytes));
                }
                Ok(holds)
            });
            match holds {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e.report(), "an index segment is unusable: the saves it covers are read instead");
                    false
                }
            }
        };
        let mut keep = chain.len();
        if keep > 0 && !holds_at(keep) {
            let (mut good, mut bad) = (0, keep - 1);
            while bad > good {
                let middle = good + (bad - good).div_ceil(2);
                if holds_at(middle) {
                    good = middle;
                } else {
                    bad = middle - 1;
                }
            }
            keep = good;
        }
        // Then the segments, read and added a batch at a time (at most 32
        // objects and `BATCH_SAVES`: a cold start holds one batch of them
        // beside the index, not all).
        let mut used = std::collections::HashSet::new();
        let mut at = 0;
        'add: while at < keep {
            let mut end = at;
            let mut saves = 0;
            while end < keep && end - at < PARALLEL_READS && (end == at || saves < BATCH_SAVES) {
                saves += chain[end].1 - chain[end].0 + 1;
                end += 1;
            }
            let wanted: Vec<usize> = (at..end)
                .filter(|&k| checked.as_ref().is_none_or(|(c, _)| *c != k))
                .collect();
            let paths: Vec<Path> = wanted.iter().map(|&k| chain[k].2.clone()).collect();
            let mut fetched = match self.fetch(&paths) {
                Ok(fetched) => wanted
                    .into_iter()
                    .zip(fetched)
                    .collect::<std::collections::HashMap<_, _>>(),
                Err(e) => {
                    tracing::warn!(error = %e.report(), "cannot read index segments: the saves they cover are read instead");
                    break;
                }
            };
            for (k, (first, last, path)) in chain.iter().enumerate().take(end).skip(at) {
                let bytes = match checked.take_if(|(c, _)| *c == k) {
                    Some((_, bytes)) => Some(bytes),
                    None => fetched.remove(&k).flatten(),
                };
                let added = bytes
                    .ok_or_else(|| Error::persistence(format!("reading {path}"), "it is gone"))
                    .and_then(|bytes| {
                        index.add_segment(&Self::parse_segment(path, &bytes, *first, *last)?)
                    });
                if let Err(e) = added {
                    tracing::warn!(segment = %path, error = %e.report(), "an index segment is unusable: the saves it covers are read instead");
                    break 'add;
                }
                used.insert(path.clone());
            }
            at = end;
        }
        let mut stale = self.stale();
        for path in names {
            if !used.contains(&path) {
                stale.insert(path);
            }
        }
        Ok(())
    }

    /// The index segment in `bytes` (read at `path`), which its name says
    /// holds saves `first` to `last`, its strings borrowed from `bytes`.
    fn parse_segment<'a>(
        path: &Path,
        bytes: &'a [u8],
        first: u64,
        last: u64,
    ) -> Result<Segment<Str<'a>>> {
        let segment: Segment<Str<'a>> = serde_json::from_slice(bytes)
            .map_err(|e| Error::persistence(format!("reading {path}"), e))?;
        if segment.saves.is_empty() || (segment.first_save, segment.last_save()) != (first, last) {
            return Err(Error::persistence(
                format!("reading {path}"),
                "it holds other saves than its name says",
            ));
        }
        Ok(segment)
    }

    /// Whether the log holds `segment`'s last save as the segment says it.
    fn holds<S>(&self, segment: &Segment<S>) -> bool {
        let last = segment.last_save();
        let path = self.path(last);
        let read = self.read(&path).and_then(|bytes| {
            bytes
                .map(|bytes| decode_object(&path, &bytes, segment.last_first_id()))
                .transpose()
        });
        match read {
            Ok(Some(save)) => {
                let events = segment.saves.last().map_or(0, |s| s.events.len());
                let (there, token) = save.events_and_token();
                let holds = there == events
                    && (segment.last_token.is_none() || token == segment.last_token.as_deref());
                if !holds {
                    tracing::warn!(save = %path, "an index segment does not match the log's save: it is passed over");
                }
                holds
            }
            Ok(None) => {
                tracing::warn!(save = %path, "an index segment covers a save the log does not have: it is passed over");
                false
            }
            Err(e) => {
                tracing::warn!(save = %path, error = %e, "cannot check an index segment against its last save: it is passed over");
                false
            }
        }
    }

    fn stale(&self) -> MutexGuard<'_, std::collections::HashSet<Path>> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes index segments, each only if absent (a segment's content
    /// follows from the log, so two processes write the same), but over a
    /// stale one (see `stale`). A failure is logged: the saves stay the
    /// truth, and are read instead.
    pub(super) fn write_segments(&self, segments: Vec<Segment>) {
        for batch in segments.chunks(PARALLEL_READS) {
            self.put_segments(batch);
        }
        for segment in &segments {
            self.merge_segments(segment.last_save());
        }
    }

    /// Writes `segments` at once, each only if absent, but over a stale
    /// one; a failure is logged (a cold start does without the segment).
    fn put_segments(&self, segments: &[Segment]) {
        let mut writes: Vec<(Path, Vec<u8>, PutMode)> = Vec::new();
        for segment in segments {
            let path = self.segment_path(segment.first_save, segment.last_save());
            match serde_json::to_vec(segment) {
                Ok(body) => {
                    let mode = if self.stale().remove(&path) {
                        PutMode::Overwrite
                    } else {
                        PutMode::Create
                    };
                    writes.push((path, body, mode));
                }
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e, "cannot encode an index segment");
                }
            }
        }
        self.block_on(async {
            let mut puts = tokio::task::JoinSet::new();
            for (path, body, mode) in writes {
                let store = self.store.clone();
                puts.spawn(async move {
                    let options = PutOptions::from(mode);
                    match store.put_opts(&path, PutPayload::from(body), options).await {
                        Ok(_)
                        | Err(object_store::Error::AlreadyExists { .. })
                        | Err(object_store::Error::Precondition { .. }) => {}
                        Err(e) => {
                            tracing::warn!(segment = %path, error = %e, "cannot write an index segment: a cold start reads what it covers another way");
                        }
                    }
                });
            }
            while puts.join_next().await.is_some() {}
        });
    }

    fn segment_path(&self, first: u64, last: u64) -> Path {
        self.segments
            .clone()
            .join(format!("{first:020}-{last:020}").as_str())
    }

    /// Merges segments into larger ones, ten to one: when save `last`
    /// ends a run of 10 segments of a level (of `segment_saves` saves,
    /// then ten times that, up to [`MERGED_SAVES`]), the segment of the
    /// run is written (read from the ten, create-if-absent). A cold start
    /// takes the longest segment at each start, so it reads one object
    /// per [`MERGED_SAVES`] saves rather than one per `segment_saves`. A run that cannot be read whole
    /// is logged and left: the ten still serve.
    fn merge_segments(&self, last: u64) {
        let mut size = self.segment_saves;
        while let Some(run) = size
            .checked_mul(10)
            .filter(|run| *run <= MERGED_SAVES && last.is_multiple_of(*run))
        {
            let first = last - run + 1;
            let paths: Vec<Path> = (0..10)
                .map(|j| {
                    let from = first + j * size;
                    self.segment_path(from, from + size - 1)
                })
                .collect();
            let merged = self.fetch(&paths).and_then(|parts| {
                let mut merged: Option<Segment> = None;
                for (path, bytes) in paths.iter().zip(parts) {
                    let bytes = bytes.ok_or_else(|| {
                        Error::persistence(format!("reading {path}"), "it is not there")
                    })?;
                    let part: Segment = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::persistence(format!("reading {path}"), e))?;
                    merged = Some(match merged {
                        None => part,
                        Some(mut merged) => {
                            let next_id = merged.first_id
                                + merged
                                    .saves
                                    .iter()
                                    .map(|s| s.events.len() as u64)
                                    .sum::<u64>();
                            if part.first_save != merged.last_save() + 1 || part.first_id != next_id
                            {
                                return Err(Error::persistence(
                                    format!("reading {path}"),
                                    "it does not follow the segment before it",
                                ));
                            }
                            merged.saves.extend(part.saves);
                            merged.last_token = part.last_token;
                            merged
                        }
                    });
                }
                Ok(merged.expect("ten parts"))
            });
            match merged {
                Ok(merged) => self.put_segments(std::slice::from_ref(&merged)),
                Err(e) => {
                    tracing::warn!(error = %e.report(), "cannot merge index segments: the smaller ones serve");
                    return;
                }
            }
            size = run;
        }
    }
}
