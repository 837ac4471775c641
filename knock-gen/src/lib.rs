//! Library of the `knock-gen` program.
