//! LiveCodeBench's compressed private tests: base64 of zlib of a pickle
//! that holds one `str`, the tests' JSON (`lcb_runner/benchmarks/
//! code_generation.py`, `CodeGenerationProblem.__post_init__`).
//!
//! Unpickling in Python runs code (`GLOBAL` + `REDUCE` call any function),
//! so the pickle is first checked opcode by opcode against the few that
//! pickling a `str` produces (protocol header, frame, string, memo, stop);
//! any other opcode is refused by name, before the bytes reach the decoder.
//! The decoding itself is serde-pickle's, which never executes anything.
//! Decompression stops at [`MAX_DECOMPRESSED`] bytes.

use std::io::Read;

use base64::Engine;

/// Most bytes one compressed field may decompress to.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Decodes a compressed test field to its JSON text.
pub fn decode_tests_text(field: &str) -> Result<String, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(field.trim().as_bytes())
        .map_err(|e| format!("neither JSON nor base64: {e}"))?;
    let mut pickled = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut pickled)
        .map_err(|e| format!("base64 but not zlib data: {e}"))?;
    if pickled.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!("decompresses to more than {MAX_DECOMPRESSED} bytes"));
    }
    check_string_pickle(&pickled)?;
    match serde_pickle::value_from_slice(&pickled, serde_pickle::DeOptions::new()) {
        Ok(serde_pickle::Value::String(s)) => Ok(s),
        Ok(other) => Err(format!("the pickle holds {}, not a str", pickle_kind(&other))),
        Err(e) => Err(format!("not a valid pickle: {e}")),
    }
}

fn pickle_kind(v: &serde_pickle::Value) -> &'static str {
    use serde_pickle::Value as V;
    match v {
        V::None => "None",
        V::Bool(_) => "a bool",
        V::I64(_) | V::Int(_) => "an int",
        V::F64(_) => "a float",
        V::Bytes(_) => "bytes",
        V::String(_) => "a str",
        V::List(_) => "a list",
        V::Tuple(_) => "a tuple",
        V::Set(_) => "a set",
        V::FrozenSet(_) => "a frozenset",
        V::Dict(_) => "a dict",
    }
}

/// Walks the opcodes of `data`, accepting only those of a pickled `str`.
pub fn check_string_pickle(data: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or("the pickle ends early")?;
        let bytes = &data[*at..end];
        *at = end;
        Ok(bytes)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    loop {
        let op = *take(&mut at, 1)?.first().expect("one byte");
        match op {
            // PROTO n
            0x80 => {
                take(&mut at, 1)?;
            }
            // FRAME n (8-byte length of the frame that follows)
            0x95 => {
                take(&mut at, 8)?;
            }
            // SHORT_BINUNICODE (1-byte length), BINUNICODE (4), BINUNICODE8 (8)
            0x8c | b'X' | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let len = le(take(&mut at, width)?);
                take(
                    &mut at,
                    usize::try_from(len).map_err(|_| "a string length overflows")?,
                )?;
            }
            // MEMOIZE, BINPUT n, LONG_BINPUT n
            0x94 => {}
            b'q' => {
                take(&mut at, 1)?;
            }
            b'r' => {
                take(&mut at, 4)?;
            }
            // STOP
            b'.' => {
                return if at == data.len() {
                    Ok(())
                } else {
                    Err("bytes after the pickle's STOP".into())
                };
            }
            other => {
                return Err(format!(
                    "pickle opcode {} (0x{other:02x}) at byte {} is refused: only a pickled str is accepted",
                    opcode_name(other),
                    at - 1
                ))
            }
        }
    }
}

/// The name of a pickle opcode, for the refusal message.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'(' => "MARK",
        b']' => "EMPTY_LIST",
        b'}' => "EMPTY_DICT",
        b')' => "EMPTY_TUPLE",
        b'J' | b'K' | b'M' | b'I' | b'L' | 0x8a | 0x8b => "an integer",
        b'G' | b'F' => "a float",
        b'U' | b'T' | b'S' | b'V' => "an old string",
        b'B' | b'C' | 0x8e | 0x96 => "bytes",
        b'e' | b'a' => "APPEND",
        b's' | b'u' => "SETITEM",
        b'h' | b'j' | b'g' => "GET",
        b'p' => "PUT",
        b'N' => "NONE",
        0x88 | 0x89 => "a bool",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'P' | b'Q' => "PERSID",
        0x82..=0x84 => "EXT",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// base64(zlib(pickle)) of raw pickle bytes.
    fn wrap(pickle: &[u8]) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(pickle).unwrap();
        base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
    }

    /// What `pickle.dumps("[...]")` writes with protocol 4: PROTO 4, FRAME,
    /// SHORT_BINUNICODE, MEMOIZE, STOP (bytes written by hand from the
    /// format's definition in Python's `pickletools`).
    fn str_pickle(text: &str) -> Vec<u8> {
        let mut p = vec![0x80, 4, 0x95];
        let body_len = 1 + 1 + text.len() + 1 + 1;
        p.extend_from_slice(&(body_len as u64).to_le_bytes());
        p.push(0x8c);
        p.push(text.len() as u8);
        p.extend_from_slice(text.as_bytes());
        p.extend_from_slice(&[0x94, b'.']);
        p
    }

    #[test]
    fn a_pickled_str_decodes() {
        let json = r#"[{"input": "1\n", "output": "2\n", "testtype": "stdin"}]"#;
        assert_eq!(decode_tests_text(&wrap(&str_pickle(json))).unwrap(), json);
        // Protocol 3 style: BINUNICODE with a 4-byte length and BINPUT.
        let mut p = vec![0x80, 3, b'X'];
        p.extend_from_slice(&(json.len() as u32).to_le_bytes());
        p.extend_from_slice(json.as_bytes());
        p.extend_from_slice(&[b'q', 0, b'.']);
        assert_eq!(decode_tests_text(&wrap(&p)).unwrap(), json);
    }

    /// `os.system("echo pwned")` as a pickle: GLOBAL 'os system', the
    /// argument tuple, REDUCE. Refused before any decoding.
    #[test]
    fn code_running_pickles_are_refused() {
        let mut global = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwned\x85R.".to_vec();
        let err = decode_tests_text(&wrap(&global)).unwrap_err();
        assert!(err.contains("GLOBAL") && err.contains("refused"), "{err}");
        // The same call through STACK_GLOBAL (protocol 4).
        global = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0aecho pwned\x85R.".to_vec();
        let err = decode_tests_text(&wrap(&global)).unwrap_err();
        assert!(err.contains("STACK_GLOBAL"), "{err}");
        // A REDUCE alone is named too.
        let err = check_string_pickle(b"\x80\x04R.").unwrap_err();
        assert!(err.contains("REDUCE"), "{err}");
        // A pickled list (not a str) is refused by the opcode check.
        let err = check_string_pickle(b"\x80\x04]\x94.").unwrap_err();
        assert!(err.contains("EMPTY_LIST"), "{err}");
    }

    #[test]
    fn broken_inputs_are_clear_errors() {
        assert!(decode_tests_text("not base64 !!").unwrap_err().contains("base64"));
        assert!(decode_tests_text("aGVsbG8=").unwrap_err().contains("zlib"));
        assert!(check_string_pickle(b"\x80\x04\x8c\x05ab")
            .unwrap_err()
            .contains("ends early"));
        assert!(check_string_pickle(b"\x80\x04.extra")
            .unwrap_err()
            .contains("after"));
        // A length field that points past the end is not trusted.
        assert!(check_string_pickle(b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.")
            .unwrap_err()
            .contains("ends early"));
    }
}
