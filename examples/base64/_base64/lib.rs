//! `_base64`: standard base64 for CPython, written in Rust on top of the
//! `cpython_api` crate (its `#[pyfunction]` wrappers parse the arguments) and
//! the bindgen-generated `cpython_sys`. It behaves as `binascii`'s strict
//! base64 does: decoding errors are `binascii.Error`, a non-ASCII str is a
//! ValueError, a wrong type a TypeError. It keeps no state, so it runs without
//! the GIL on the free-threaded build.

use cpython_api::{pyfunction, pymodule, AsciiBuffer, PyErr, PyResult};

mod codec;

fn decode_error(err: codec::DecodeError) -> PyErr {
    PyErr::named("binascii", "Error", err.to_string())
}

/// Encode the bytes-like object data with the standard base64 alphabet.
#[pyfunction]
fn standard_b64encode(data: &[u8]) -> Vec<u8> {
    codec::encode(data)
}

/// Decode standard base64 from a bytes-like object or ASCII str, strictly
/// (binascii.a2b_base64(s, strict_mode=True)); binascii.Error on bad input.
#[pyfunction]
fn standard_b64decode(data: AsciiBuffer) -> PyResult<Vec<u8>> {
    codec::decode(&data).map_err(decode_error)
}

/// Encode s with the standard alphabet, or with altchars (two bytes) for + and /.
#[pyfunction]
fn b64encode(s: &[u8], altchars: Option<&[u8]>) -> PyResult<Vec<u8>> {
    let mut out = codec::encode(s);
    if let Some(alt) = altchars {
        if alt.len() != 2 {
            return Err(PyErr::value_error(format!("altchars must be 2 bytes, not {}", alt.len())));
        }
        for c in out.iter_mut() {
            match *c {
                b'+' => *c = alt[0],
                b'/' => *c = alt[1],
                _ => {}
            }
        }
    }
    Ok(out)
}

pymodule!(_base64, "Standard base64 implemented in Rust.", [standard_b64encode, standard_b64decode, b64encode]);
