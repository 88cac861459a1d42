//! IDX parsing of good and corrupt files, file discovery under both namings, and TF1's split.
use nndl::data::idx::{encode_images, encode_labels, parse_images, parse_labels, unpack};
use nndl::data::mnist::{Mnist, FILES};
use nndl::data::{DeviceSplit, Split};
use std::io::Write;


fn images(count: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..count * 784).map(|i| (i % 256) as u8).collect();
    encode_images(count, 28, 28, &pixels)
}

#[test]
fn good_files_parse() {
    let img = parse_images(&images(3)).unwrap();
    assert_eq!((img.count, img.rows, img.cols, img.pixels.len()), (3, 28, 28, 3 * 784));
    assert_eq!(img.pixels[300], (300 % 256) as u8);
    assert_eq!(parse_labels(&encode_labels(&[0, 9, 4])).unwrap(), vec![0, 9, 4]);
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = images(2);
    bytes[3] = 0x01; // the labels' magic on an image file
    let err = parse_images(&bytes).unwrap_err().to_string();
    assert!(err.contains("wrong magic"), "{err}");
    let err = parse_labels(&images(2)).unwrap_err().to_string();
    assert!(err.contains("wrong magic"), "{err}");
}

#[test]
fn truncated_files_are_rejected() {
    let bytes = images(2);
    let err = parse_images(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
    assert!(err.contains("holds"), "{err}");
    let err = parse_images(&bytes[..10]).unwrap_err().to_string();
    assert!(err.contains("truncated header"), "{err}");
    let labels = encode_labels(&[1, 2, 3]);
    assert!(parse_labels(&labels[..labels.len() - 1]).is_err());
}

#[test]
fn count_mismatch_is_rejected() {
    let mut labels = encode_labels(&[1, 2, 3]);
    labels[7] = 4; // header says 4 labels, file holds 3
    assert!(parse_labels(&labels).is_err());
    let img = parse_images(&images(2)).unwrap();
    let test = parse_images(&images(1)).unwrap();
    let err = Mnist::from_parts(img, &[1, 2, 3], test, &[0], 1).unwrap_err().to_string();
    assert!(err.contains("2 images but 3 labels"), "{err}");
}

#[test]
fn label_ten_is_rejected() {
    let err = parse_labels(&encode_labels(&[0, 10, 2])).unwrap_err().to_string();
    assert!(err.contains("label 10 at index 1"), "{err}");
}

#[test]
fn absurd_header_does_not_allocate() {
    // 2^31 images of 28x28 claimed by a 16-byte file: rejected from the header alone.
    let bytes = encode_images(1 << 31, 28, 28, &[]);
    let err = parse_images(&bytes).unwrap_err().to_string();
    assert!(err.contains("holds 0"), "{err}");
    // Dimensions whose product overflows u64.
    let bytes = encode_images(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3]);
    assert!(parse_images(&bytes).is_err());
}

#[test]
fn gzip_is_unpacked_and_bombs_are_capped() {
    let raw = images(2);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    assert_eq!(unpack(gz.finish().unwrap()).unwrap(), raw);
    assert_eq!(unpack(raw.clone()).unwrap(), raw);
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 70 << 20]).unwrap();
    assert!(unpack(bomb.finish().unwrap()).is_err());
    assert!(unpack(vec![0x1f, 0x8b, 1, 2, 3]).is_err());
}

#[test]
fn files_are_found_under_both_namings_and_verified() {
    let dir = crate::util::tempdir("naming");
    let f = &FILES[1];
    std::fs::write(dir.join("train-labels.idx1-ubyte"), encode_labels(&[1, 2])).unwrap();
    assert_eq!(f.find_in(&dir).unwrap(), dir.join("train-labels.idx1-ubyte"));
    // Found, but not the real MNIST: the SHA-256 check names the file and the fix.
    let err = f.read_verified(&dir).unwrap_err().to_string();
    assert!(err.contains("train-labels.idx1-ubyte is corrupt") && err.contains("nndl data fetch"), "{err}");
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), b"x").unwrap();
    assert_eq!(f.find_in(&dir).unwrap(), dir.join("train-labels-idx1-ubyte.gz"));
    let err = FILES[0].read_verified(&dir).unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn split_follows_read_data_sets() {
    let img = parse_images(&images(10)).unwrap();
    let test = parse_images(&images(4)).unwrap();
    let labels: Vec<u8> = (0..10).map(|i| i as u8 % 10).collect();
    let m = Mnist::from_parts(img, &labels, test, &[1, 2, 3, 4], 3).unwrap();
    assert_eq!((m.validation.len(), m.train.len(), m.test.len()), (3, 7, 4));
    assert_eq!(m.train.labels[0], 3, "training starts after the validation images");
    let images = m.train.images();
    assert_eq!(images[0], (3 * 784 % 256) as f32 * (1.0f64 / 255.0) as f32);
    assert!(images.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert_eq!(images.iter().cloned().fold(0.0, f32::max), 1.0);
}

#[test]
fn the_upload_scales_pixels_as_the_split_does() {
    // The device's images are scaled by libtorch; every byte value must give TF1's f32.
    let split = Split { pixels: (0..2 * 784).map(|i| (i % 256) as u8).collect(), labels: vec![3, 4] };
    let uploaded = DeviceSplit::upload(&split, tch::Device::Cpu);
    assert_eq!(uploaded.images.size(), [2, 784]);
    let on_device = Vec::<f32>::try_from(uploaded.images.flatten(0, -1)).unwrap();
    assert!(on_device.iter().map(|x| x.to_bits()).eq(split.images().iter().map(|x| x.to_bits())), "pixels scaled differently");
    assert_eq!(Vec::<i64>::try_from(&uploaded.labels).unwrap(), [3, 4]);
}

#[test]
fn real_mnist_loads() {
    // Like every MNIST test: scripts/test fetches it, CI points MNIST_DIR at its copy.
    let dir = crate::util::mnist_dir();
    let m = Mnist::load(&dir).unwrap();
    assert_eq!((m.train.len(), m.validation.len(), m.test.len()), (55_000, 5_000, 10_000));
    assert_eq!(m.train.pixels.len(), 55_000 * 784);
}

#[test]
fn mnist_loads_where_no_thread_can_start() {
    // A stack no thread can get makes every thread fail to start, as a process limit would:
    // the files are then read one after another, not reported as a panic.
    let dir = crate::util::tempdir("no-threads");
    let out = crate::util::nndl().args(["mlp", "--iterations", "1", "--threads", "1", "--device", "cpu", "--quiet", "--data"])
        .arg(crate::util::mnist_dir()).arg("--out").arg(dir.join("run")).env("RUST_MIN_STACK", "100000000000000").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_corrupt_gz_beside_a_good_file_falls_back_to_it() {
    let dir = crate::util::tempdir("fallback");
    let f = &FILES[1];
    let good = f.read_verified(&crate::util::mnist_dir()).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), b"\x1f\x8bnot really gzip").unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &good).unwrap();
    assert_eq!(f.read_verified(&dir).unwrap(), good, "the plain file is used when the .gz fails");
    std::fs::remove_file(dir.join("train-labels-idx1-ubyte")).unwrap();
    let err = f.read_verified(&dir).unwrap_err().to_string();
    assert!(err.contains("train-labels-idx1-ubyte.gz"), "with only the bad .gz, its error is the one reported: {err}");
}
