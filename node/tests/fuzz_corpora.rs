//! Replays the fuzzers' corpora (`fuzz/corpus/<target>/`: seeds from real traffic and
//! real files, and every input a fuzzer ever found crashing) through
//! `zabkeeper::fuzzing`, then a seeded stream of mutations of them (bit flips, byte
//! changes, cuts, splices, repeated lengths): what `make fuzz` does with AFL++, briefly
//! and without it, so that `cargo test` in CI catches a regression in any input format.

use std::path::PathBuf;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MUTATIONS_PER_FILE: usize = 300;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

fn mutate(rng: &mut ChaCha8Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.next_u32() % 4 {
        let r = rng.next_u32();
        let at = |rng: &mut ChaCha8Rng, len: usize| (rng.next_u32() as usize) % len.max(1);
        match r % 7 {
            0 if !d.is_empty() => {
                let i = at(rng, d.len());
                d[i] ^= 1 << (rng.next_u32() % 8);
            }
            1 if !d.is_empty() => {
                let i = at(rng, d.len());
                d[i] = [0, 0xff, 0x7f, 0x80, 1][rng.next_u32() as usize % 5];
            }
            2 if !d.is_empty() => {
                let cut = at(rng, d.len());
                d.truncate(cut);
            }
            3 => {
                // a big-endian length or count that lies
                let i = at(rng, d.len().saturating_sub(4));
                let v: u32 = [0xffff_ffff, 0x7fff_ffff, 0x8000_0000, 0x0010_0000, 0]
                    [rng.next_u32() as usize % 5];
                if d.len() >= i + 4 {
                    d[i..i + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            4 if !other.is_empty() => {
                // splice in a piece of another input
                let a = at(rng, other.len());
                let b = (a + 1 + at(rng, 64)).min(other.len());
                let i = at(rng, d.len());
                d.splice(i..i, other[a..b].iter().copied());
            }
            5 if !d.is_empty() => {
                // repeat a piece
                let a = at(rng, d.len());
                let b = (a + 1 + at(rng, 32)).min(d.len());
                let piece = d[a..b].to_vec();
                d.splice(a..a, piece);
            }
            _ => d.push(rng.next_u32() as u8),
        }
    }
    d
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    for (name, target) in zabkeeper::fuzzing::TARGETS {
        let files = corpus(name);
        assert!(!files.is_empty(), "fuzz/corpus/{name} is empty");
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        let mut runs = 0;
        for (i, (path, data)) in files.iter().enumerate() {
            let replay = std::panic::catch_unwind(|| target(data));
            assert!(replay.is_ok(), "{name}: {} panics", path.display());
            let other = &files[(i + 1) % files.len()].1;
            for _ in 0..MUTATIONS_PER_FILE {
                let m = mutate(&mut rng, data, other);
                if std::panic::catch_unwind(|| target(&m)).is_err() {
                    panic!(
                        "{name}: a mutation of {} panics; input (hex): {}",
                        path.display(),
                        m.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    );
                }
                runs += 1;
            }
        }
        eprintln!("{name}: {} corpus files, {runs} mutations", files.len());
    }
}
