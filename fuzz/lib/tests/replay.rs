//! Replays every committed corpus entry and every fixed crash through the target bodies.
//!
//! `corpus/<target>/*` holds the seeds (from the spec's transcripts) and what the fuzzers kept;
//! `regressions/<target>/*` holds inputs that once crashed a target and were fixed. Both must
//! pass. `artifacts-known/<target>/*` holds reproducers of open bugs in other crates: they are
//! replayed only by the ignored test below, which is expected to fail until they are fixed.

use std::path::{Path, PathBuf};

/// Upper bound on the files replayed per folder: the committed corpus is meant to stay small,
/// so a folder above this is a mistake to catch, not to replay slowly.
const MAX_FILES_PER_FOLDER: usize = 5_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(folder: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(folder) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    assert!(
        out.len() <= MAX_FILES_PER_FOLDER,
        "{} holds {} files; minimise it (cargo fuzz cmin)",
        folder.display(),
        out.len()
    );
    out
}

fn replay(kind: &str, target: &str) -> usize {
    let folder = fuzz_dir().join(kind).join(target);
    let mut n = 0;
    for file in files(&folder) {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| qmp_fuzz::run_target(target, &data));
        match outcome {
            Ok(true) => n += 1,
            Ok(false) => panic!("unknown target {target}"),
            Err(_) => panic!("{} fails target {target}", file.display()),
        }
    }
    n
}

#[test]
fn every_corpus_and_regression_file_passes() {
    let mut total = 0;
    for target in qmp_fuzz::TARGETS {
        let seeds = replay("corpus", target);
        let fixed = replay("regressions", target);
        eprintln!("{target}: {seeds} corpus files, {fixed} regressions replayed");
        total += seeds + fixed;
    }
    // The committed seeds come from the spec's transcripts: an empty replay means the corpus
    // went missing, not that everything passed.
    assert!(total >= 100, "only {total} corpus files replayed");
}

#[test]
fn every_target_has_a_seed_corpus() {
    for target in qmp_fuzz::TARGETS {
        let n = files(&fuzz_dir().join("corpus").join(target)).len();
        assert!(n > 0, "corpus/{target} is empty");
    }
}

/// Reproducers of open bugs in other crates (see FUZZING.md). Run with
/// `cargo test --manifest-path fuzz/Cargo.toml -p qmp-fuzz -- --ignored` to see which still fail.
#[test]
#[ignore = "known open bugs: expected to fail until fixed"]
fn known_bugs_are_fixed() {
    // Turn off the tolerance of known false alarms (qmp_fuzz::known) for this process.
    std::env::set_var("QMP_FUZZ_STRICT", "1");
    let mut failing = Vec::new();
    for target in qmp_fuzz::TARGETS {
        for file in files(&fuzz_dir().join("artifacts-known").join(target)) {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| qmp_fuzz::run_target(target, &data)).is_err() {
                failing.push(file.display().to_string());
            }
        }
    }
    assert!(failing.is_empty(), "still failing: {failing:#?}");
}

/// Refreshes `corpus/trace_roundtrip/seed-raw-*`: traces recorded from a few scenario seeds,
/// as text for the target's raw mode (a fuzzer does not find valid trace lines by itself).
#[test]
#[ignore = "writes corpus files: run by hand after changing the trace format"]
fn write_raw_trace_seeds() {
    let dir = fuzz_dir().join("corpus");
    for name in ["seed-A2", "seed-B4", "seed-F1", "seed-P1"] {
        let Ok(data) = std::fs::read(dir.join("scenario").join(name)) else {
            continue;
        };
        let s = qmp_fuzz::scenario::Scenario::decode(&data);
        let (text, _) = qmp_fuzz::trace_roundtrip::record(&s);
        let mut seed = vec![1u8];
        seed.extend_from_slice(text.as_bytes());
        let out = dir
            .join("trace_roundtrip")
            .join(format!("seed-raw-{}", &name[5..]));
        std::fs::write(out, seed).unwrap();
    }
}
