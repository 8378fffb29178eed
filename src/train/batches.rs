//! Batches and the order they come in: seeded shuffling of table rows epoch by
//! epoch, seeded random windows of a token stream, and the fixed, exhaustive pass
//! evaluation makes over a held-out split.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{self, Table, Tokens};

/// Model inputs of one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// Row-major real features, `cols` per row.
    Features { x: Vec<f32>, cols: usize },
    /// Row-major token ids, `cols` per row.
    Ids { ids: Vec<usize>, cols: usize },
}

/// Targets of one batch: one per row (tables) or one per position (sequences).
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Values(Vec<f32>),
    Classes(Vec<usize>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Values(v) => v.len(),
            Targets::Classes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub inputs: Inputs,
    pub rows: usize,
    pub targets: Targets,
}

impl Batch {
    /// Training units in the batch: examples for tables, predicted tokens for
    /// sequences. This is what D counts.
    pub fn units(&self) -> usize {
        self.targets.len()
    }
}

/// Training data in memory.
#[derive(Debug, Clone)]
pub enum Source {
    /// A table; `ids` when its columns are token ids (text classification).
    Table { table: Table, ids: bool },
    /// A token stream cut into windows of `seq` inputs (+1 shifted target).
    /// `pieces` are the contiguous `[start, end)` stretches of the stream (one,
    /// unless the dataset records cuts in `{split}.offsets.bin`); no window
    /// crosses a cut.
    Stream {
        tokens: Tokens,
        seq: usize,
        pieces: Vec<(usize, usize)>,
    },
}

impl Source {
    /// A stream source; `offsets` are piece start positions (empty: one piece).
    pub fn stream(tokens: Tokens, seq: usize, offsets: &[u64]) -> Self {
        let len = tokens.ids.len();
        let mut starts: Vec<usize> = offsets.iter().map(|&o| (o as usize).min(len)).collect();
        if starts.first() != Some(&0) {
            starts.insert(0, 0);
        }
        starts.push(len);
        let pieces = starts
            .windows(2)
            .map(|w| (w[0], w[1]))
            .filter(|(a, b)| b > a)
            .collect();
        Source::Stream {
            tokens,
            seq,
            pieces,
        }
    }

    /// Window starts each piece of a stream allows: `(first, count)` per piece.
    fn window_ranges(pieces: &[(usize, usize)], seq: usize) -> Vec<(usize, usize)> {
        pieces
            .iter()
            .filter(|(a, b)| b - a > seq)
            .map(|&(a, b)| (a, b - a - seq))
            .collect()
    }

    /// Whether at least one full window (`seq` inputs and a target) fits.
    pub fn has_window(&self) -> bool {
        match self {
            Source::Table { table, .. } => table.rows > 0,
            Source::Stream { seq, pieces, .. } => !Self::window_ranges(pieces, *seq).is_empty(),
        }
    }

    /// Units (examples or tokens) in one pass over the data.
    pub fn units_per_epoch(&self) -> usize {
        match self {
            Source::Table { table, .. } => table.rows,
            Source::Stream { tokens, .. } => tokens.ids.len().saturating_sub(1),
        }
    }

    /// Units in one batch of `batch_size` rows.
    pub fn units_per_batch(&self, batch_size: usize) -> usize {
        match self {
            Source::Table { .. } => batch_size,
            Source::Stream { seq, .. } => batch_size * seq,
        }
    }

    /// The batch made of table rows `rows`, or of stream windows starting at `rows`.
    pub fn gather(&self, rows: &[usize]) -> Batch {
        match self {
            Source::Table { table, ids } => {
                let c = table.cols;
                let inputs = if *ids {
                    let ids = rows
                        .iter()
                        .flat_map(|&r| table.x[r * c..(r + 1) * c].iter().map(|&v| v as usize))
                        .collect();
                    Inputs::Ids { ids, cols: c }
                } else {
                    let x = rows
                        .iter()
                        .flat_map(|&r| table.x[r * c..(r + 1) * c].iter().copied())
                        .collect();
                    Inputs::Features { x, cols: c }
                };
                let targets = match &table.y {
                    data::Targets::Regression(y) => {
                        Targets::Values(rows.iter().map(|&r| y[r]).collect())
                    }
                    data::Targets::Classes(y) => {
                        Targets::Classes(rows.iter().map(|&r| y[r] as usize).collect())
                    }
                };
                Batch {
                    inputs,
                    rows: rows.len(),
                    targets,
                }
            }
            Source::Stream { tokens, seq, .. } => {
                let ids = &tokens.ids;
                let mut x = Vec::with_capacity(rows.len() * seq);
                let mut y = Vec::with_capacity(rows.len() * seq);
                for &start in rows {
                    x.extend(ids[start..start + seq].iter().map(|&t| t as usize));
                    y.extend(ids[start + 1..start + seq + 1].iter().map(|&t| t as usize));
                }
                Batch {
                    inputs: Inputs::Ids { ids: x, cols: *seq },
                    rows: rows.len(),
                    targets: Targets::Classes(y),
                }
            }
        }
    }
}

/// Draws training batches in a seeded order: table rows reshuffled every epoch
/// (the last partial batch of an epoch is completed from the next one), stream
/// windows at uniformly random offsets, as nanoGPT does.
pub struct Sampler<'a> {
    source: &'a Source,
    batch_size: usize,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
    /// The rng's position before it shuffled `order`, to shuffle it again.
    shuffled_at: Option<u128>,
}

/// Where a [`Sampler`] is in its stream: with the seed, enough to continue it
/// exactly (the current epoch's order is re-shuffled, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The rng's position, in 32-bit words.
    pub word_pos: u128,
    /// Its position before it shuffled the current epoch (tables).
    pub shuffled_at: Option<u128>,
    /// Rows of the current epoch already drawn.
    pub cursor: usize,
}

impl<'a> Sampler<'a> {
    pub fn new(source: &'a Source, batch_size: usize, rng: ChaCha8Rng) -> Self {
        Sampler {
            source,
            batch_size,
            rng,
            order: Vec::new(),
            cursor: 0,
            shuffled_at: None,
        }
    }

    /// The sampler that `new` with the same `rng` (freshly seeded) was at
    /// when [`Sampler::state`] returned `state`.
    pub fn resume(
        source: &'a Source,
        batch_size: usize,
        mut rng: ChaCha8Rng,
        state: SamplerState,
    ) -> Self {
        let mut sampler = Sampler::new(source, batch_size, rng.clone());
        if let (Some(at), Source::Table { table, .. }) = (state.shuffled_at, source) {
            rng.set_word_pos(at);
            sampler.order = (0..table.rows).collect();
            sampler.order.shuffle(&mut rng);
            sampler.shuffled_at = Some(at);
        }
        rng.set_word_pos(state.word_pos);
        sampler.rng = rng;
        sampler.cursor = state.cursor;
        sampler
    }

    pub fn state(&self) -> SamplerState {
        SamplerState {
            word_pos: self.rng.get_word_pos(),
            shuffled_at: self.shuffled_at,
            cursor: self.cursor,
        }
    }

    pub fn next_batch(&mut self) -> Batch {
        let rows: Vec<usize> = match self.source {
            Source::Table { table, .. } => (0..self.batch_size)
                .map(|_| {
                    if self.cursor == self.order.len() {
                        self.shuffled_at = Some(self.rng.get_word_pos());
                        self.order = (0..table.rows).collect();
                        self.order.shuffle(&mut self.rng);
                        self.cursor = 0;
                    }
                    self.cursor += 1;
                    self.order[self.cursor - 1]
                })
                .collect(),
            Source::Stream { seq, pieces, .. } => {
                // Uniform over all valid window starts, whichever piece they are in.
                let ranges = Source::window_ranges(pieces, *seq);
                let total: usize = ranges.iter().map(|r| r.1).sum();
                (0..self.batch_size)
                    .map(|_| {
                        let mut k = self.rng.gen_range(0..total);
                        for &(first, count) in &ranges {
                            if k < count {
                                return first + k;
                            }
                            k -= count;
                        }
                        unreachable!("k < total")
                    })
                    .collect()
            }
        };
        self.source.gather(&rows)
    }
}

/// Every example of a held-out split once, in order: table rows in batches,
/// or non-overlapping stream windows (at most `max_units` tokens).
pub fn eval_batches(source: &Source, batch_size: usize, max_units: Option<usize>) -> Vec<Batch> {
    let starts: Vec<usize> = match source {
        Source::Table { table, .. } => (0..table.rows).collect(),
        Source::Stream { seq, pieces, .. } => {
            let starts = pieces.iter().flat_map(|&(a, b)| {
                let windows = (b - a).saturating_sub(1) / seq;
                (0..windows).map(move |w| a + w * seq)
            });
            let cap = max_units.map_or(usize::MAX, |m| (m / seq).max(1));
            starts.take(cap).collect()
        }
    };
    starts
        .chunks(batch_size.max(1))
        .map(|rows| source.gather(rows))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn stream(len: usize, seq: usize, offsets: &[u64]) -> Source {
        let tokens = Tokens {
            ids: (0..len as u32).collect(),
            vocab: len,
        };
        Source::stream(tokens, seq, offsets)
    }

    #[test]
    fn windows_never_cross_a_piece_boundary() {
        // Pieces [0, 10), [10, 13) (too short for a window), [13, 40).
        let source = stream(40, 4, &[0, 10, 13]);
        let mut sampler = Sampler::new(&source, 64, ChaCha8Rng::seed_from_u64(1));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let batch = sampler.next_batch();
            let (Inputs::Ids { ids, .. }, Targets::Classes(y)) = (&batch.inputs, &batch.targets)
            else {
                panic!("stream batches are ids and classes")
            };
            for (x, t) in ids.chunks(4).zip(y.chunks(4)) {
                let start = x[0];
                seen.insert(start);
                // Ids equal positions here, so a window is consecutive numbers and
                // its targets are shifted by one, all inside one piece.
                assert!(x.windows(2).all(|w| w[1] == w[0] + 1));
                assert_eq!(t[3], start + 4);
                assert!(start + 4 < 10 || (start >= 13 && start + 4 < 40), "{start}");
            }
        }
        // Every valid start is drawn: 0..=5 and 13..=35.
        let expected: Vec<usize> = (0..=5).chain(13..=35).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
        assert!(!stream(4, 4, &[]).has_window());
        assert!(stream(5, 4, &[]).has_window());
    }

    #[test]
    fn evaluation_covers_each_piece_in_order_without_overlap() {
        let source = stream(40, 4, &[0, 10, 13]);
        let batches = eval_batches(&source, 3, None);
        let starts: Vec<usize> = batches
            .iter()
            .flat_map(|b| match &b.inputs {
                Inputs::Ids { ids, cols } => ids.chunks(*cols).map(|w| w[0]).collect::<Vec<_>>(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(starts, vec![0, 4, 13, 17, 21, 25, 29, 33]);
        assert_eq!(
            eval_batches(&source, 3, Some(8))
                .iter()
                .map(Batch::units)
                .sum::<usize>(),
            8
        );
    }

    #[test]
    fn a_resumed_sampler_draws_what_the_original_would() {
        let table = Table {
            x: (0..10).map(|v| v as f32).collect(),
            rows: 10,
            cols: 1,
            y: crate::data::Targets::Regression((0..10).map(|v| v as f32).collect()),
        };
        let sources = [Source::Table { table, ids: false }, stream(40, 4, &[])];
        for source in &sources {
            let rng = || ChaCha8Rng::seed_from_u64(7);
            // Cut mid-epoch (7 of 10 rows drawn) and at an epoch's end.
            for cut in [1, 2, 5] {
                let mut whole = Sampler::new(source, 7, rng());
                let mut first = Sampler::new(source, 7, rng());
                for _ in 0..cut {
                    assert_eq!(whole.next_batch(), first.next_batch());
                }
                let mut resumed = Sampler::resume(source, 7, rng(), first.state());
                for _ in 0..6 {
                    assert_eq!(whole.next_batch(), resumed.next_batch());
                }
            }
        }
    }

    #[test]
    fn table_epochs_visit_every_row_once() {
        let table = Table {
            x: (0..10).map(|v| v as f32).collect(),
            rows: 10,
            cols: 1,
            y: crate::data::Targets::Regression((0..10).map(|v| v as f32).collect()),
        };
        let source = Source::Table { table, ids: false };
        let mut sampler = Sampler::new(&source, 5, ChaCha8Rng::seed_from_u64(3));
        for _ in 0..3 {
            let mut rows: Vec<f32> = Vec::new();
            for _ in 0..2 {
                let Targets::Values(y) = sampler.next_batch().targets else {
                    unreachable!()
                };
                rows.extend(y);
            }
            rows.sort_by(f32::total_cmp);
            assert_eq!(rows, (0..10).map(|v| v as f32).collect::<Vec<_>>());
        }
    }
}
