//! Standard base64 (RFC 4648, `+/` alphabet, `=` padding), without Python.

use thiserror::Error;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a string is not valid standard base64. The messages follow
/// `binascii.Error`'s where the standard library has one.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("Incorrect padding")]
    Padding,
    #[error("Invalid base64-encoded string: number of data characters ({0}) cannot be 1 more than a multiple of 4")]
    Length(usize),
    #[error("Only base64 data is allowed: invalid byte 0x{byte:02x} at position {pos}")]
    InvalidByte { byte: u8, pos: usize },
    #[error("Excess data after padding at position {0}")]
    ExcessData(usize),
}

pub fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((input.len() + 2) / 3 * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 { ALPHABET[(n >> 6) as usize & 63] } else { b'=' });
        out.push(if chunk.len() > 2 { ALPHABET[n as usize & 63] } else { b'=' });
    }
    out
}

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes strictly: only alphabet characters, then padding to a multiple of four.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let data_len = input.iter().position(|&c| c == b'=').unwrap_or(input.len());
    for (pos, &c) in input[..data_len].iter().enumerate() {
        if value(c).is_none() {
            return Err(DecodeError::InvalidByte { byte: c, pos });
        }
    }
    if let Some(pos) = input[data_len..].iter().position(|&c| c != b'=') {
        return Err(DecodeError::ExcessData(data_len + pos));
    }
    if data_len % 4 == 1 {
        return Err(DecodeError::Length(data_len));
    }
    let pad = input.len() - data_len;
    if input.len() % 4 != 0 || pad > 2 {
        return Err(DecodeError::Padding);
    }
    let mut out = Vec::with_capacity(data_len / 4 * 3 + 2);
    for chunk in input[..data_len].chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c).unwrap() << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in 0..64usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
        for (plain, enc) in cases {
            assert_eq!(encode(plain.as_bytes()), enc.as_bytes());
            assert_eq!(decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(b"Zm9"), Err(DecodeError::Padding));
        assert_eq!(decode(b"Z"), Err(DecodeError::Length(1)));
        assert_eq!(decode(b"Zm9v!A=="), Err(DecodeError::InvalidByte { byte: b'!', pos: 4 }));
        assert_eq!(decode(b"Zg==Zg=="), Err(DecodeError::ExcessData(4)));
    }
}
