//! The speed routes' A/B switches in the environment (README, under Commands). Each is read
//! where its route is chosen; `check` runs once at start, so that a mistyped value is one clear
//! error instead of a silent default. An empty value counts as unset.
use anyhow::{bail, Result};

/// Every switch and the values it takes.
pub const SWITCHES: [(&str, &[&str]); 6] = [
    ("NNDL_CNN_LAYOUT", &["nchw", "nhwc"]),
    ("NNDL_CNN_BIAS", &["conv", "pool"]),
    ("NNDL_PACK_STREAMS", &["on", "off"]),
    ("NNDL_PACK_WEIGHTS", &["out-in", "in-out"]),
    ("NNDL_EVAL_OVERLAP", &["on", "off"]),
    ("NNDL_OVERLAP_START", &["on", "off"]),
];

/// Fails on the first switch set to a value it does not take.
pub fn check() -> Result<()> {
    check_with(|name| std::env::var(name).ok())
}

fn check_with(value_of: impl Fn(&str) -> Option<String>) -> Result<()> {
    for (name, values) in SWITCHES {
        match value_of(name) {
            Some(v) if !v.is_empty() && !values.contains(&v.as_str()) => bail!("{name}={v:?}: expected {}", values.join(" or ")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_with;

    fn with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |n| (n == name).then(|| value.to_string())
    }

    #[test]
    fn known_values_and_empty_ones_pass_and_others_are_named() {
        assert!(check_with(|_| None).is_ok());
        assert!(check_with(with("NNDL_PACK_STREAMS", "off")).is_ok());
        assert!(check_with(with("NNDL_CNN_LAYOUT", "")).is_ok());
        let e = check_with(with("NNDL_PACK_STREAMS", "yes")).unwrap_err().to_string();
        assert_eq!(e, "NNDL_PACK_STREAMS=\"yes\": expected on or off");
        assert!(check_with(with("NNDL_CNN_LAYOUT", "NHWC")).is_err());
    }
}
