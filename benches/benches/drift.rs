//! Drift statistics on 1M-sample windows: opsloop's core against scipy/numpy on the same data,
//! timed in the same run (best of 3 each). The reference side is a stored baseline (bins and
//! counts, a sorted sample), as in the engine; the current window is raw values, so each timing
//! includes binning or sorting the window.
//!
//! `cargo bench -p opsloop-benches --bench drift` (Python with numpy/scipy: the interpreter in
//! `OPSLOOP_PYTHON`, default the reference-values virtualenv that scripts/test.sh creates).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use opsloop_udfs::drift::binned::{Bins, chi_square, hellinger, jensen_shannon, psi};
use opsloop_udfs::drift::samples::{SortedSample, kolmogorov_smirnov, wasserstein};
use opsloop_udfs::special::normal_quantile;

const SAMPLES: usize = 1_000_000;
const CATEGORIES: u32 = 20;

/// Deterministic pseudo-random numbers (SplitMix64).
struct Random(u64);

impl Random {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        mean + sd * normal_quantile(self.unit().clamp(1e-12, 1.0 - 1e-12))
    }
}

fn best_of_3<T>(mut work: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut result = None;
    for _ in 0..3 {
        let started = Instant::now();
        let value = work();
        best = best.min(started.elapsed().as_secs_f64());
        result = Some(value);
    }
    (best, result.expect("ran three times"))
}

fn write_f64s(path: &Path, values: &[f64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write benchmark data");
}

fn write_u32s(path: &Path, values: &[u32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write benchmark data");
}

fn python() -> PathBuf {
    std::env::var_os("OPSLOOP_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/opsloop/py-reference/bin/python")
        },
        PathBuf::from,
    )
}

fn main() {
    let mut random = Random(42);
    let reference: Vec<f64> = (0..SAMPLES).map(|_| random.normal(0.0, 1.0)).collect();
    let current: Vec<f64> = (0..SAMPLES).map(|_| random.normal(0.1, 1.1)).collect();
    let category = |random: &mut Random, skew: f64| {
        ((random.unit().powf(skew) * f64::from(CATEGORIES)) as u32).min(CATEGORIES - 1)
    };
    let ref_codes: Vec<u32> = (0..SAMPLES).map(|_| category(&mut random, 1.0)).collect();
    let cur_codes: Vec<u32> = (0..SAMPLES).map(|_| category(&mut random, 1.05)).collect();

    // The stored baseline: bins and counts, and the sorted reference.
    let bins = Bins::quantiles(&reference, 10);
    let reference_counts = bins.histogram(&reference);
    let sorted_reference = SortedSample::new(reference.clone());
    let mut ref_category_counts = vec![0.0; CATEGORIES as usize];
    for &c in &ref_codes {
        ref_category_counts[c as usize] += 1.0;
    }

    let ours: Vec<(&str, f64, f64)> = vec![
        {
            let (s, v) = best_of_3(|| psi(&reference_counts, &bins.histogram(&current)));
            ("psi", s, v)
        },
        {
            let (s, v) = best_of_3(|| jensen_shannon(&reference_counts, &bins.histogram(&current)));
            ("jensen_shannon", s, v)
        },
        {
            let (s, v) = best_of_3(|| hellinger(&reference_counts, &bins.histogram(&current)));
            ("hellinger", s, v)
        },
        {
            let (s, v) = best_of_3(|| {
                kolmogorov_smirnov(&sorted_reference, &SortedSample::new(current.clone())).statistic
            });
            ("ks", s, v)
        },
        {
            let (s, v) =
                best_of_3(|| wasserstein(&sorted_reference, &SortedSample::new(current.clone())));
            ("wasserstein", s, v)
        },
        {
            let (s, v) = best_of_3(|| {
                let mut counts = vec![0.0; CATEGORIES as usize];
                for &c in &cur_codes {
                    counts[c as usize] += 1.0;
                }
                chi_square(&ref_category_counts, &counts).p_value
            });
            ("chi_square", s, v)
        },
    ];

    let dir = tempfile_dir();
    write_f64s(&dir.join("reference.f64"), &reference);
    write_f64s(&dir.join("current.f64"), &current);
    write_f64s(&dir.join("edges.f64"), bins.edges());
    write_u32s(&dir.join("ref_codes.u32"), &ref_codes);
    write_u32s(&dir.join("cur_codes.u32"), &cur_codes);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/drift_baseline.py");
    let output = Command::new(python()).arg(&script).arg(&dir).output();
    let _ = std::fs::remove_dir_all(&dir);
    let baseline: Option<serde_json::Value> = match output {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(out) => {
            eprintln!(
                "scipy baseline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(error) => {
            eprintln!("no Python for the scipy baseline ({error}); set OPSLOOP_PYTHON");
            None
        }
    };

    println!("drift statistics, {SAMPLES} samples per side, one core, best of 3");
    println!(
        "{:<16} {:>12} {:>12} {:>9} {:>22} {:>22}",
        "statistic", "opsloop", "scipy", "speed-up", "opsloop value", "scipy value"
    );
    for (name, seconds, value) in ours {
        let theirs = baseline.as_ref().and_then(|b| b.get(name));
        let their_seconds = theirs.and_then(|t| t["seconds"].as_f64());
        let their_value = theirs.and_then(|t| t["value"].as_f64());
        println!(
            "{:<16} {:>10.3}ms {:>12} {:>9} {:>22.12e} {:>22}",
            name,
            seconds * 1e3,
            their_seconds.map_or("-".to_owned(), |s| format!("{:.3}ms", s * 1e3)),
            their_seconds.map_or("-".to_owned(), |s| format!("{:.1}x", s / seconds)),
            value,
            their_value.map_or("-".to_owned(), |v| format!("{v:.12e}")),
        );
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opsloop-drift-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
