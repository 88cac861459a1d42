//! Inputs the fuzzers (fuzz/, scripts/fuzz) found interesting, kept as regression tests: each
//! must give an error (or a value), never a panic or an allocation beyond its size.
