//! Property-based fuzzing of every decoder: any bytes, and any corruption of a valid record,
//! must give a value or a typed error, never a panic. `PROPTEST_CASES` sets the budget.

use std::fmt::Debug;
use std::sync::Arc;

use opsloop_schemas::examples::{self, ExampleVisitor};
use opsloop_schemas::{AvroRecord, Codec, RecordKind, SchemaRegistry, WireFormat};
use proptest::prelude::*;

/// Decodes `bytes` as every kind in every format; the result is ignored, a panic fails.
fn decode_as_everything(bytes: &[u8]) {
    struct DecodeAll<'b>(&'b [u8]);
    impl ExampleVisitor for DecodeAll<'_> {
        fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, _: &T) {
            for format in WireFormat::ALL {
                let codec = Codec::new(format, Arc::new(SchemaRegistry::builtin()));
                let _ = codec.decode::<T>(self.0);
            }
        }
    }
    examples::visit_all(&mut DecodeAll(bytes));
}

/// Valid encodings of every example in every format, to corrupt.
fn valid_encodings() -> Vec<Vec<u8>> {
    struct Encode(Vec<Vec<u8>>);
    impl ExampleVisitor for Encode {
        fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
            for format in WireFormat::ALL {
                let codec = Codec::new(format, Arc::new(SchemaRegistry::builtin()));
                self.0.push(codec.encode(example).expect("examples encode"));
            }
        }
    }
    let mut encode = Encode(Vec::new());
    examples::visit_all(&mut encode);
    assert_eq!(
        encode.0.len(),
        RecordKind::ALL.len() * WireFormat::ALL.len()
    );
    encode.0
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_as_everything(&bytes);
    }

    #[test]
    fn corrupted_records_never_panic(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let encodings = valid_encodings();
        let mut bytes = which.get(&encodings).clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        decode_as_everything(&bytes);
    }
}
