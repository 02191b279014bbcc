//! Generated device passwords: words from a list, then digits.
//!
//! The number of words follows from the list's size so that every
//! password carries at least [`MIN_ENTROPY_BITS`] of entropy; with the
//! built-in EFF list (7,776 words, 12.9 bits each) that is four words and
//! five digits, about 68 bits, e.g. `glacier-saffron-ember-otter-73021`.

use std::collections::BTreeSet;
use std::path::Path;

use rand::RngExt;

use crate::secret::Secret;

pub const MIN_ENTROPY_BITS: f64 = 64.0;
const DIGITS: u32 = 5;
const MIN_WORDS_IN_LIST: usize = 64;
const BUILTIN: &str = include_str!("../data/eff_large_wordlist.txt");

#[derive(Debug, thiserror::Error)]
pub enum WordlistError {
    #[error("cannot read the word list: {0}")]
    Read(#[from] std::io::Error),
    #[error("the word list has {0} distinct words; at least {MIN_WORDS_IN_LIST} are needed")]
    TooSmall(usize),
}

pub struct Wordlist {
    words: Vec<String>,
}

impl Wordlist {
    /// The built-in EFF large word list.
    pub fn builtin() -> Result<Self, WordlistError> {
        Self::parse(BUILTIN)
    }

    pub fn load(path: Option<&Path>) -> Result<Self, WordlistError> {
        match path {
            Some(path) => Self::parse(&std::fs::read_to_string(path)?),
            None => Self::builtin(),
        }
    }

    /// One word a line; a line may start with dice digits and a tab (the
    /// EFF format), so the last field of each line is the word. Words are
    /// de-duplicated so repeated lines do not inflate the entropy figure.
    pub fn parse(text: &str) -> Result<Self, WordlistError> {
        let words: BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .filter(|w| !w.starts_with('#'))
            .collect();
        if words.len() < MIN_WORDS_IN_LIST {
            return Err(WordlistError::TooSmall(words.len()));
        }
        Ok(Wordlist {
            words: words.into_iter().map(str::to_owned).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Words per password, the fewest that reach the entropy target.
    pub fn words_needed(&self) -> u32 {
        let per_word = (self.words.len() as f64).log2();
        let from_digits = f64::from(DIGITS) * 10f64.log2();
        ((MIN_ENTROPY_BITS - from_digits) / per_word)
            .ceil()
            .max(1.0) as u32
    }

    pub fn entropy_bits(&self) -> f64 {
        f64::from(self.words_needed()) * (self.words.len() as f64).log2()
            + f64::from(DIGITS) * 10f64.log2()
    }

    pub fn generate(&self) -> Secret<String> {
        let mut rng = rand::rng();
        let mut parts: Vec<String> = (0..self.words_needed())
            .map(|_| self.words[rng.random_range(0..self.words.len())].clone())
            .collect();
        let number: u32 = rng.random_range(0..10u32.pow(DIGITS));
        parts.push(format!("{number:0width$}", width = DIGITS as usize));
        Secret::new(parts.join("-"))
    }
}

/// A login for the `attempt`-th try: `username#NNN`, with more digits after
/// many collisions so a user with many tokens still gets one quickly.
pub fn login_for(username: &str, attempt: u32) -> String {
    let digits = 3 + attempt / 8;
    let max = 10u64.pow(digits.min(12));
    let n = rand::rng().random_range(0..max);
    format!("{username}#{n:0width$}", width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_list_reaches_the_target() {
        let list = Wordlist::builtin().expect("built-in list parses");
        assert_eq!(list.len(), 7776);
        assert_eq!(list.words_needed(), 4);
        assert!(list.entropy_bits() >= MIN_ENTROPY_BITS);
        let password = list.generate();
        let parts: Vec<&str> = password.expose().split('-').collect();
        assert_eq!(parts.len(), 5);
        assert!(parts[4].len() == 5 && parts[4].bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn smaller_lists_need_more_words() {
        let text: String = (0..100).map(|i| format!("w{i}\n")).collect();
        let list = Wordlist::parse(&text).expect("100 words");
        // log2(100) = 6.64 bits a word: (64 - 16.6) / 6.64 -> 8 words.
        assert_eq!(list.words_needed(), 8);
        assert!(list.entropy_bits() >= MIN_ENTROPY_BITS);
    }

    #[test]
    fn tiny_or_repetitive_lists_are_refused() {
        let text = "same\n".repeat(1000);
        assert!(matches!(
            Wordlist::parse(&text),
            Err(WordlistError::TooSmall(1))
        ));
    }

    #[test]
    fn logins_grow_after_collisions() {
        assert_eq!(login_for("alice", 0).len(), "alice#000".len());
        assert_eq!(login_for("alice", 8).len(), "alice#0000".len());
    }
}
