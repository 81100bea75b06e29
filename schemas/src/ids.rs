//! Deterministic record ids: the same inputs give the same id in every process and replay, so
//! consumers upsert re-emitted records instead of counting them twice; and [`hex`], the
//! spelling of ids, digests and signatures made of bytes.

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// The bytes `text` spells in hex (either case); `None` unless every pair is hex digits.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A 128-bit FNV-1a hash over length-prefixed `fields`, as 32 lowercase hex digits. The length
/// prefixes keep `("ab", "c")` and `("a", "bc")` apart.
pub fn stable_id(fields: &[&[u8]]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut hash = OFFSET;
    for field in fields {
        for &byte in (field.len() as u64).to_le_bytes().iter().chain(*field) {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::{hex, stable_id, unhex};

    #[test]
    fn hex_spells_every_byte_in_two_lowercase_digits_and_back() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(unhex("000FA0ff"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("+f"), None);
    }

    #[test]
    fn length_prefixes_separate_fields() {
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_eq!(stable_id(&[b"ab", b"c"]), stable_id(&[b"ab", b"c"]));
        assert_eq!(stable_id(&[]).len(), 32);
    }
}
