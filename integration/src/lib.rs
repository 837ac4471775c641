//! Command-line tests of `knockd`, `knock` and `knock-gen` live in `tests/`.
//! They run the real binaries of the workspace and need no privilege.
