//! `opsloop schemas roundtrip`: every record kind of the contract encoded in every wire format,
//! decoded again and compared, with sizes and per-record codec times.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use opsloop_schemas::examples::{self, ExampleVisitor};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};

struct RoundTripReport {
    codecs: Vec<Codec>,
    iterations: u32,
    failures: Vec<String>,
}

impl ExampleVisitor for RoundTripReport {
    fn visit<T: AvroRecord + std::fmt::Debug + PartialEq>(&mut self, example: &T) {
        let mut cells = Vec::new();
        for codec in &self.codecs {
            let outcome = codec.encode(example).and_then(|bytes| {
                let decoded: T = codec.decode(&bytes)?;
                Ok((bytes, decoded))
            });
            match outcome {
                Ok((bytes, decoded)) if &decoded == example => {
                    let started = Instant::now();
                    let mut buffer = Vec::with_capacity(bytes.len());
                    for _ in 0..self.iterations {
                        buffer.clear();
                        let encoded = codec.encode_into(example, &mut buffer);
                        let decoded = codec.decode::<T>(&buffer);
                        std::hint::black_box((encoded, decoded).0.is_ok());
                    }
                    let per_record = started.elapsed() / self.iterations.max(1);
                    cells.push(format!(
                        "{:>5} B {:>7.2} µs",
                        bytes.len(),
                        per_record.as_secs_f64() * 1e6
                    ));
                }
                Ok(_) => {
                    self.failures.push(format!(
                        "{} in {}: decoded value differs",
                        T::KIND,
                        codec.format()
                    ));
                    cells.push(format!("{:>18}", "MISMATCH"));
                }
                Err(error) => {
                    self.failures
                        .push(format!("{} in {}: {error}", T::KIND, codec.format()));
                    cells.push(format!("{:>18}", "ERROR"));
                }
            }
        }
        println!("{:<18} {}", T::KIND.name(), cells.join("  "));
    }
}

pub(super) fn run(iterations: u32) -> anyhow::Result<()> {
    let registry = Arc::new(SchemaRegistry::builtin());
    let codecs: Vec<Codec> = WireFormat::ALL
        .into_iter()
        .map(|format| Codec::new(format, Arc::clone(&registry)))
        .collect();
    println!("opsloop schema round-trip: every contract record, encoded, decoded and compared");
    println!("(size and encode+decode time per record)\n");
    let header: Vec<String> = codecs
        .iter()
        .map(|c| format!("{:>18}", c.format()))
        .collect();
    println!("{:<18} {}", "record", header.join("  "));
    let mut report = RoundTripReport {
        codecs,
        iterations,
        failures: Vec::new(),
    };
    examples::visit_all(&mut report);
    if !report.failures.is_empty() {
        bail!("round trip failed:\n  {}", report.failures.join("\n  "));
    }
    println!("\nall records round-tripped unchanged in every format");
    Ok(())
}
