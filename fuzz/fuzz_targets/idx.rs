//! IDX reader: raw or gzipped (multi-member) bytes -> unpack -> parse_images / parse_labels.
//! Properties: no panic; unpack never yields more than MAX_UNPACKED bytes; what parses
//! re-encodes to exactly the bytes it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nndl::data::idx;

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = idx::unpack(data.to_vec()) else { return };
    assert!(bytes.len() as u64 <= idx::MAX_UNPACKED, "unpacked {} bytes", bytes.len());
    if let Ok(images) = idx::parse_images(&bytes) {
        let n = images.count as u128 * images.rows as u128 * images.cols as u128;
        assert_eq!(n, images.pixels.len() as u128);
        let again = idx::encode_images(images.count as u32, images.rows as u32, images.cols as u32, &images.pixels);
        assert_eq!(again, bytes);
    }
    if let Ok(labels) = idx::parse_labels(&bytes) {
        assert!(labels.iter().all(|&l| l <= 9));
        assert_eq!(idx::encode_labels(&labels), bytes);
    }
});
