//! Turning text into token ids: byte level, word level (for text columns of
//! tables) and character level (for corpora).
//!
//! Vocabularies are deterministic functions of the text they are built from:
//! words are ranked by count, ties broken by the word itself; characters are
//! sorted by code point.

use std::collections::{BTreeMap, HashMap};

/// Padding id of text-classification sequences.
pub const PAD: u32 = 0;
/// Id of a word outside the vocabulary.
pub const UNKNOWN: u32 = 1;

/// Splits text into lowercase words: runs of letters, digits and apostrophes;
/// every other non-space character is a word of its own (so "great!" is
/// `great`, `!`).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' {
            current.extend(c.to_lowercase());
        } else {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !c.is_whitespace() {
                out.push(c.to_lowercase().collect());
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A word vocabulary: id 0 is padding, 1 unknown, then words by falling count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordVocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl WordVocab {
    /// Builds a vocabulary of at most `max_vocab` ids (padding and unknown
    /// included) from `texts`.
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>, max_vocab: usize) -> WordVocab {
        Self::build_min_count(texts, max_vocab, 1)
    }

    /// [`Self::build`], keeping only words seen at least `min_count` times (the
    /// rest map to the unknown id).
    pub fn build_min_count<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        max_vocab: usize,
        min_count: u64,
    ) -> WordVocab {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for text in texts {
            for w in words(text) {
                *counts.entry(w).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, u64)> = counts
            .into_iter()
            .filter(|&(_, count)| count >= min_count)
            .collect();
        // BTreeMap order makes ties fall back to the word itself.
        ranked.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        ranked.truncate(max_vocab.saturating_sub(2));
        let words: Vec<String> = ranked.into_iter().map(|(w, _)| w).collect();
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 2))
            .collect();
        WordVocab { words, ids }
    }

    /// Ids in use: padding, unknown and the words.
    pub fn len(&self) -> usize {
        self.words.len() + 2
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The words, in id order starting at id 2.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Ids of a text's words.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        words(text)
            .iter()
            .map(|w| self.ids.get(w).copied().unwrap_or(UNKNOWN))
            .collect()
    }
}

/// Byte-level ids of a text-classification sequence: byte + 1 (0 is padding), so
/// the vocabulary has 257 ids.
pub fn byte_ids(text: &str) -> Vec<u32> {
    text.bytes().map(|b| b as u32 + 1).collect()
}

/// Truncates or pads (with [`PAD`]) to exactly `len` ids; returns whether it cut.
pub fn fit_to_len(ids: &mut Vec<u32>, len: usize) -> bool {
    let cut = ids.len() > len;
    ids.resize(len, PAD);
    cut
}

/// A character vocabulary built from a corpus: the kept characters sorted by code
/// point (a character's id is its index) and, when some characters were dropped
/// by the caps, one last id shared by all of them (the unknown bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    /// Distinct characters mapped to the unknown id.
    dropped: usize,
}

impl CharVocab {
    /// Keeps the characters seen at least `min_count` times, then the most frequent
    /// of those (ties to the lower code point) so that the vocabulary, unknown id
    /// included, has at most `max_vocab` ids.
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        max_vocab: usize,
        min_count: u64,
    ) -> CharVocab {
        let mut counts: BTreeMap<char, u64> = BTreeMap::new();
        for text in texts {
            for c in text.chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        let seen = counts.len();
        let mut ranked: Vec<(char, u64)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= min_count)
            .collect();
        // Everything fits without an unknown id only if nothing was dropped.
        let room = if ranked.len() == seen && seen <= max_vocab {
            seen
        } else {
            max_vocab.saturating_sub(1)
        };
        if ranked.len() > room {
            // Stable sort keeps code-point order among equal counts.
            ranked.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
            ranked.truncate(room);
        }
        let mut chars: Vec<char> = ranked.into_iter().map(|(c, _)| c).collect();
        chars.sort_unstable();
        CharVocab {
            dropped: seen - chars.len(),
            chars,
        }
    }

    /// The kept characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Distinct characters that map to the unknown id.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The unknown id, when some characters were dropped.
    pub fn unknown(&self) -> Option<u32> {
        (self.dropped > 0).then_some(self.chars.len() as u32)
    }

    /// Ids in use, the unknown id included.
    pub fn len(&self) -> usize {
        self.chars.len() + usize::from(self.dropped > 0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of a character of the corpus the vocabulary was built from.
    pub fn id(&self, c: char) -> u32 {
        match self.chars.binary_search(&c) {
            Ok(i) => i as u32,
            Err(_) => self.chars.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_punctuation_and_lowercase() {
        assert_eq!(
            words("Great film!  Don't miss it."),
            ["great", "film", "!", "don't", "miss", "it", "."]
        );
    }

    #[test]
    fn vocab_ranks_by_count_then_word_and_caps_size() {
        let vocab = WordVocab::build(["b a a", "c b a", "d"], 4);
        assert_eq!(vocab.words(), ["a", "b"]);
        assert_eq!(vocab.len(), 4);
        assert_eq!(vocab.encode("a b c zzz"), [2, 3, UNKNOWN, UNKNOWN]);
    }

    #[test]
    fn word_vocab_min_count_sends_rare_words_to_unknown() {
        let vocab = WordVocab::build_min_count(["b a a", "c b a", "d"], 100, 2);
        assert_eq!(vocab.words(), ["a", "b"]);
        assert_eq!(vocab.encode("a c d"), [2, UNKNOWN, UNKNOWN]);
    }

    #[test]
    fn char_vocab_caps_into_an_unknown_bucket() {
        let all = CharVocab::build(["aab", "c"], 10, 1);
        assert_eq!(
            (all.chars(), all.unknown(), all.len()),
            (&['a', 'b', 'c'][..], None, 3)
        );
        // Three ids: the two most frequent (ties to the lower code point) and unknown.
        let capped = CharVocab::build(["aaabbc", "d"], 3, 1);
        assert_eq!(capped.chars(), ['a', 'b']);
        assert_eq!((capped.unknown(), capped.dropped()), (Some(2), 2));
        assert_eq!([capped.id('a'), capped.id('b'), capped.id('d')], [0, 1, 2]);
        let rare = CharVocab::build(["aaabbc"], 100, 2);
        assert_eq!((rare.chars(), rare.len()), (&['a', 'b'][..], 3));
    }

    #[test]
    fn sequences_are_padded_and_truncated() {
        let mut ids = byte_ids("hi");
        assert!(!fit_to_len(&mut ids, 4));
        assert_eq!(ids, [b'h' as u32 + 1, b'i' as u32 + 1, 0, 0]);
        assert!(fit_to_len(&mut ids, 1));
        assert_eq!(ids.len(), 1);
    }
}
