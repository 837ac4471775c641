//! Library of the `knock` program.
