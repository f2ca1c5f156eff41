//! The one reader every untrusted file comes through: [`read_bounded`] and
//! [`read_text_bounded`] on a file of the fuzzer's bytes, with a limit it picks (the first 8
//! bytes, little-endian; the rest is the file). The file comes back whole exactly when it is
//! within the limit, and as text exactly when it is also UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refrain::files::{read_bounded, read_text_bounded, ReadError};

fuzz_target!(|data: &[u8]| {
    let Some((limit, content)) = data.split_first_chunk::<8>() else {
        return;
    };
    let limit = u64::from_le_bytes(*limit);
    let path = refrain_fuzz::scratch_file("bounded", content);
    let fits = content.len() as u64 <= limit;
    match read_bounded(&path, limit) {
        Ok(bytes) => {
            assert!(fits, "{} bytes read under a limit of {limit}", bytes.len());
            assert_eq!(bytes, content);
        }
        Err(ReadError::TooLarge { size, limit: l, .. }) => {
            assert!(
                !fits,
                "refused {} bytes under a limit of {limit}",
                content.len()
            );
            assert_eq!((size, l), (content.len() as u64, limit));
        }
        Err(e) => panic!("a regular file is refused: {e}"),
    }
    match read_text_bounded(&path, limit) {
        Ok(text) => assert!(fits && text.as_bytes() == content),
        Err(e) => assert!(!fits || std::str::from_utf8(content).is_err(), "{e}"),
    }
});
