//! Checkpoint reader: safetensors bytes -> tensor_file::decode (header, offsets, dtypes, shapes
//! into CPU tensors) -> Checkpoint::from_parts (metadata JSON, position, required tensors).
//! Properties: no panic, no libtorch abort, no allocation beyond what the input's size justifies
//! (libFuzzer's -malloc_limit_mb / -rss_limit_mb report those); every decoded tensor holds
//! exactly the bytes its header declared.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nndl::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok((tensors, metadata)) = nndl::tensor_file::decode(data) else { return };
    let bytes: usize = tensors.iter().map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes()).sum();
    assert!(bytes <= data.len(), "{} bytes of tensors from a {}-byte file", bytes, data.len());
    let _ = Checkpoint::from_parts(tensors, metadata);
});
