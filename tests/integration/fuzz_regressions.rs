//! Inputs the fuzzers (fuzz/, scripts/fuzz) found interesting, kept as regression tests: each
//! must give an error (or a value), never a panic or an allocation beyond its size.
//! Each goes through the same library calls as its fuzz target (fuzz/fuzz_targets/*.rs); the
//! hostile ones are made by hand here, so the tests need no files and no MNIST.
use nndl::checkpoint::Checkpoint;
use nndl::config::{ModelKind, Origin, Preset, TrainConfig};
use nndl::data::idx::{encode_images, encode_labels, parse_images, parse_labels, unpack, MAX_UNPACKED};
use serde_json::{json, Value};
use std::io::Write;

// ---- idx: unpack, then parse_images and parse_labels -------------------------------------

/// What the idx fuzz target does with one input; Err when unpack or both parsers refuse it.
fn idx_target(raw: &[u8]) -> Result<(), String> {
    let bytes = unpack(raw.to_vec()).map_err(|e| e.to_string())?;
    assert!(bytes.len() as u64 <= MAX_UNPACKED);
    match (parse_images(&bytes), parse_labels(&bytes)) {
        (Err(a), Err(b)) => Err(format!("{a} / {b}")),
        _ => Ok(()),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn truncated_gzip_is_an_error() {
    let good = gzip(&encode_labels(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0]));
    assert!(idx_target(&good).is_ok());
    for cut in [2, 3, 10, good.len() / 2, good.len() - 8, good.len() - 1] {
        let err = unpack(good[..cut].to_vec()).unwrap_err().to_string();
        assert!(err.contains("corrupt gzip"), "cut at {cut}: {err}");
    }
    // A second member that breaks off.
    let mut two = good.clone();
    two.extend_from_slice(&good[..good.len() / 2]);
    assert!(unpack(two).is_err());
    // Zero bytes after the last member (a copy padded to a block) are ignored, as gunzip
    // ignores them; anything else after it is not.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 100]);
    assert_eq!(unpack(padded.clone()).unwrap(), unpack(good.clone()).unwrap());
    padded.push(7);
    assert!(unpack(padded).unwrap_err().to_string().contains("corrupt gzip"));
    // Bad CRC: the trailer's checksum flipped.
    let mut crc = good.clone();
    let at = crc.len() - 8;
    crc[at] ^= 0xff;
    assert!(unpack(crc).is_err());
}

#[test]
fn gzip_bomb_beyond_the_cap_is_refused() {
    // 65 members of 1 MiB of zeros: 65 MiB unpacked from about 65 kB, past the 64 MiB cap.
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb: Vec<u8> = member.iter().copied().cycle().take(member.len() * 65).collect();
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let err = unpack(bomb).unwrap_err().to_string();
    assert!(err.contains("unpacks to more than"), "{err}");
    // Exactly at the cap is still a file (and then not IDX).
    let at_cap: Vec<u8> = member.iter().copied().cycle().take(member.len() * 64).collect();
    assert_eq!(unpack(at_cap).unwrap().len() as u64, MAX_UNPACKED);
}

#[test]
fn idx_headers_claiming_more_than_the_file_holds_are_errors() {
    // Dimensions whose product overflows u64, and ones that fit u64 but not the file.
    let header = |magic: u32, dims: &[u32]| -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
        b
    };
    let err = parse_images(&header(0x803, &[u32::MAX; 3])).unwrap_err().to_string();
    assert!(err.contains("overflow"), "{err}");
    let err = parse_images(&header(0x803, &[60_000, 28, 28])).unwrap_err().to_string();
    assert!(err.contains("holds 0"), "{err}");
    assert!(parse_labels(&header(0x801, &[u32::MAX])).is_err());
    // Gzipped, the same.
    assert!(idx_target(&gzip(&header(0x803, &[u32::MAX, u32::MAX, 2]))).is_err());
    // A header cut short, raw and gzipped; an empty file; a lone gzip magic.
    for bytes in [&header(0x803, &[1, 1])[..], &[0, 0, 8], &[], &[0x1f, 0x8b]] {
        assert!(idx_target(bytes).is_err(), "{bytes:?}");
        assert!(idx_target(&gzip(bytes)).is_err(), "gzip of {bytes:?}");
    }
    // Labels beyond 9.
    let err = parse_labels(&encode_labels(&[3, 10])).unwrap_err().to_string();
    assert!(err.contains("label 10 at index 1"), "{err}");
}

#[test]
fn zero_sized_idx_parses_to_nothing() {
    // A zero dimension makes any other one legal: nothing is allocated for it.
    let bytes = encode_images(0, u32::MAX, u32::MAX, &[]);
    let img = parse_images(&bytes).unwrap();
    assert_eq!((img.count, img.pixels.len()), (0, 0));
    assert_eq!(parse_labels(&encode_labels(&[])).unwrap(), Vec::<u8>::new());
}

// ---- config: serde, validate, lr_at, is_eval_point ---------------------------------------

fn config_json(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = serde_json::to_value(TrainConfig::preset(ModelKind::Mlp, Preset::Modern)).unwrap();
    edit(&mut v);
    v.to_string()
}

/// What the config fuzz target does; Err when serde or validate refuses the text.
fn config_target(text: &str) -> Result<TrainConfig, String> {
    let cfg: TrainConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    cfg.validate(&Origin::Flags).map_err(|e| e.to_string())?;
    for i in [0, 1, cfg.iterations / 2, cfg.iterations - 1] {
        let lr = cfg.lr_at(i);
        assert!(lr.is_finite() && lr >= 0.0 && lr <= cfg.lr * (1.0 + 1e-12), "lr_at({i}) = {lr}");
    }
    assert!(cfg.is_eval_point(cfg.iterations - 1));
    Ok(cfg)
}

#[test]
fn hostile_config_values_are_errors() {
    let cases: Vec<(Value, &str, Value)> = vec![
        (json!("lr"), "invalid --lr 1e39", json!(1e39)),
        (json!("lr"), "invalid --lr", json!(1e-46)),
        (json!("lr"), "invalid --lr", json!(-0.0)),
        (json!("iterations"), "invalid --iterations 0", json!(0)),
        (json!("iterations"), "invalid --iterations", json!(1_000_000_001u64)),
        (json!("eval_every"), "invalid --eval-every 0", json!(0)),
        (json!("batch_size"), "invalid --batch-size", json!(55_001)),
        (json!("checkpoint_every"), "invalid --checkpoint-every 0", json!(0)),
        (json!("threads"), "invalid --threads 0", json!(0)),
        (json!("augment_shift"), "invalid --augment-shift", json!(-1)),
        (json!("augment_shift"), "invalid --augment-shift", json!(i64::MIN)),
        (json!("device"), "invalid --device", json!("cuda:-1")),
        (json!("device"), "invalid --device", json!("cuda:99999999999999999999")),
        (json!("schedule"), "invalid --warmup 0", json!({"kind": "warmup_cosine", "warmup": 0})),
        (json!("dropout"), "invalid --keep-prob", json!({"kind": "keep_prob", "keep_prob": 0.0, "in_eval": false})),
        (json!("dropout"), "invalid --keep-prob", json!({"kind": "keep_prob", "keep_prob": 1.5, "in_eval": false})),
    ];
    for (key, needle, value) in cases {
        let text = config_json(|v| v[key.as_str().unwrap()] = value.clone());
        let err = config_target(&text).unwrap_err();
        assert!(err.contains(needle), "{key} = {value}: {err}");
    }
}

#[test]
fn malformed_config_text_is_an_error() {
    for text in [
        "",
        "{",
        "[]",
        "null",
        &config_json(|v| v["learning_rate"] = json!(0.1)),
        &config_json(|_| {}).replace("\"iterations\":4001", "\"iterations\":18446744073709551616"),
        &config_json(|v| v["iterations"] = json!(-1)),
        &config_json(|v| v["lr"] = json!("NaN")),
        &config_json(|v| v["schedule"] = json!({"kind": "warmup_cosine"})),
        &config_json(|v| v["dropout"] = json!({"kind": "keep_prob", "keep_prob": 0.5, "in_eval": false, "x": 1})),
        &config_json(|v| v.as_object_mut().unwrap().remove("model").map(drop).unwrap()),
    ] {
        assert!(config_target(text).is_err(), "{text}");
    }
    // serde_json refuses numbers past f64 (1e400) and nesting past its recursion limit.
    assert!(config_target(&config_json(|_| {}).replace("\"seed\":0", "\"seed\":1e400")).is_err());
    assert!(config_target(&"[".repeat(100_000)).is_err());
}

#[test]
fn edge_schedules_stay_in_range() {
    // Warm-up longer than the run, one iteration, a huge lr, the smallest float32 holds.
    for (iterations, warmup, lr) in [(1, 1, 1.0), (3, 1000, 1e-3), (2, 1, 3e38), (1_000_000_000, 999_999_999, 1e-45)] {
        let text = config_json(|v| {
            v["iterations"] = json!(iterations);
            v["schedule"] = json!({"kind": "warmup_cosine", "warmup": warmup});
            v["lr"] = json!(lr);
        });
        config_target(&text).unwrap_or_else(|e| panic!("{iterations} {warmup} {lr}: {e}"));
    }
}

// ---- checkpoint: tensor_file::decode, then Checkpoint::from_parts ------------------------

/// safetensors bytes: an 8-byte little-endian header length, the JSON header, the data.
fn safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// What the checkpoint fuzz target does; Err when decode or from_parts refuses the bytes.
fn checkpoint_target(bytes: &[u8]) -> Result<Checkpoint, String> {
    let (tensors, metadata) = nndl::tensor_file::decode(bytes).map_err(|e| format!("decode: {e}"))?;
    let held: usize = tensors.iter().map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes()).sum();
    assert!(held <= bytes.len());
    Checkpoint::from_parts(tensors, metadata).map_err(|e| format!("from_parts: {e}"))
}

fn meta(edit: impl FnOnce(&mut Value)) -> Value {
    let mut config = serde_json::to_value(TrainConfig::preset(ModelKind::Mlp, Preset::Faithful)).unwrap();
    config["iterations"] = json!(3);
    // A finished run of 3 iterations evaluated at its first and its last.
    let point = |i: u64| json!({"iteration": i, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.5});
    let mut m = json!({
        "format": 1, "next_iteration": 3, "config": config, "adam_step": null, "chunk_start": 0,
        "batcher": {"index_in_epoch": 0, "epochs_completed": 0, "rng_state": 7},
        "since_eval": 0, "points": [point(0), point(2)], "train_seconds": 0.1, "eval_seconds": 0.1, "device": "cpu",
    });
    edit(&mut m);
    m
}

/// A small checkpoint: the four tensors from_parts requires, and `meta` as its metadata.
fn checkpoint_bytes(meta: &Value) -> Vec<u8> {
    let mut data = Vec::new();
    [2i64, 0, 1].iter().for_each(|v| data.extend_from_slice(&v.to_le_bytes())); // batcher.order 0..24
    data.extend_from_slice(&[7u8; 16]); // rng.cpu 24..40
    data.extend_from_slice(&5i64.to_le_bytes()); // sums.correct 40..48
    data.extend_from_slice(&1.5f32.to_le_bytes()); // sums.loss 48..52
    let header = json!({
        "__metadata__": {"nndl.checkpoint": meta.to_string()},
        "batcher.order": {"dtype": "I64", "shape": [3], "data_offsets": [0, 24]},
        "rng.cpu": {"dtype": "U8", "shape": [16], "data_offsets": [24, 40]},
        "sums.correct": {"dtype": "I64", "shape": [], "data_offsets": [40, 48]},
        "sums.loss": {"dtype": "F32", "shape": [], "data_offsets": [48, 52]},
    });
    safetensors(&header, &data)
}

#[test]
fn a_small_synthetic_checkpoint_loads() {
    let ck = checkpoint_target(&checkpoint_bytes(&meta(|_| {}))).unwrap();
    assert_eq!(ck.meta.next_iteration, 3);
    assert_eq!(ck.tensor("sums.correct").unwrap().int64_value(&[]), 5);
    // JSON has no NaN: an allow_nan run's diverged figures are written as null and read as NaN.
    let ck = checkpoint_target(&checkpoint_bytes(&meta(|m| m["points"][1]["test_loss"] = json!(null)))).unwrap();
    assert!(ck.meta.points[1].test_loss.is_nan());
}

#[test]
fn safetensors_headers_claiming_huge_sizes_are_errors() {
    // Header length u64::MAX, and one just past the file.
    assert!(checkpoint_target(&u64::MAX.to_le_bytes()).is_err());
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    assert!(checkpoint_target(&bytes).is_err());
    // Tensors whose element count overflows, or claims a terabyte the file lacks.
    let one = |dtype: &str, shape: Value, offsets: Value, data: &[u8]| {
        safetensors(&json!({"t": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}), data)
    };
    let cases = [
        one("F32", json!([u64::MAX, 2]), json!([0, 8]), &[0; 8]),
        one("F64", json!([1u64 << 62]), json!([0, 0]), &[]),
        one("U8", json!([1u64 << 40]), json!([0, 1u64 << 40]), &[0; 16]),
        one("F32", json!([4]), json!([0, u64::MAX]), &[0; 16]),
        one("F32", json!([4]), json!([8, 24]), &[0; 24]),
        // A zero dimension next to dimensions past i64::MAX: 0 bytes for safetensors, but a
        // negative size once cast to libtorch's int64.
        one("F32", json!([0, u64::MAX]), json!([0, 0]), &[]),
        one("F32", json!([0, 1u64 << 63, 1u64 << 63]), json!([0, 0]), &[]),
        // dtypes libtorch has no kind for here.
        one("U16", json!([1]), json!([0, 2]), &[0; 2]),
        one("U64", json!([1]), json!([0, 8]), &[0; 8]),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let err = checkpoint_target(bytes).err().unwrap_or_else(|| panic!("case {i} decoded"));
        assert!(err.starts_with("decode: "), "case {i}: {err}");
    }
}

#[test]
fn hostile_checkpoint_metadata_is_an_error() {
    let cases: Vec<(Value, &str)> = vec![
        (meta(|m| m["next_iteration"] = json!(u64::MAX)), "outside a run"),
        (meta(|m| m["next_iteration"] = json!(4)), "outside a run"),
        (meta(|m| m["chunk_start"] = json!(u64::MAX)), "outside a run"),
        (meta(|m| m["format"] = json!(2)), "format 2"),
        (meta(|m| m["since_eval"] = json!(1_000_000)), "since_eval 1000000 where 0 steps"),
        (meta(|m| m["points"][1]["iteration"] = json!(1)), "not the ones due before iteration 3"),
        (meta(|m| m["points"] = json!([])), "its 0 evaluation points"),
        // NaN figures, as an allow_nan run writes them, read back.
        (meta(|m| m["points"][1]["test_loss"] = json!("NaN")), "bad metadata"),
        (meta(|m| m["config"]["lr"] = json!(1e39)), "lr 1e39"),
        (meta(|m| m["config"]["iterations"] = json!(0)), "iterations 0"),
        (meta(|m| m["next_iteration"] = json!(-1)), "bad metadata"),
        (meta(|m| m["extra"] = json!(1)), "bad metadata"),
        (json!("not an object"), "bad metadata"),
    ];
    for (m, needle) in cases {
        let err = checkpoint_target(&checkpoint_bytes(&m)).err().unwrap_or_else(|| panic!("{m} loaded"));
        assert!(err.contains(needle), "{m}: {err}");
    }
    // Metadata that is not JSON at all, and none.
    let mut header = json!({"__metadata__": {"nndl.checkpoint": "{{{"}});
    assert!(checkpoint_target(&safetensors(&header, &[])).unwrap_err().contains("bad metadata"));
    header = json!({});
    assert!(checkpoint_target(&safetensors(&header, &[])).unwrap_err().contains("no nndl.checkpoint"));
}

#[test]
fn a_checkpoint_missing_a_required_tensor_is_an_error() {
    let header = json!({
        "__metadata__": {"nndl.checkpoint": meta(|_| {}).to_string()},
        "rng.cpu": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
    });
    let err = checkpoint_target(&safetensors(&header, &[0])).unwrap_err();
    assert!(err.contains("missing tensor"), "{err}");
}

/// The two config defects the fuzzing found, from the inputs kept in fuzz/regressions/config/.
#[test]
fn config_regressions_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/config");
    let text = std::fs::read_to_string(dir.join("lr-f32-max-not-reread.json")).unwrap();
    let cfg: nndl::config::TrainConfig = serde_json::from_str(&text).unwrap();
    cfg.validate(&nndl::config::Origin::Flags).expect("f32::MAX as an lr reads back as written");
    let text = std::fs::read_to_string(dir.join("unit-variant-ignores-unknown-fields.json")).unwrap();
    let err = serde_json::from_str::<nndl::config::TrainConfig>(&text).unwrap_err().to_string();
    assert!(err.contains("unknown field"), "{err}");
}
