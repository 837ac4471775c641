//! Library of the `knock` program: command line, packet construction,
//! address resolution and the senders (raw sockets or ordinary sockets).

pub mod packet;
