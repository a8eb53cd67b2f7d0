//! Integration tests of the SIP parser and writers: the torture corpora (RFC 4475, RFC 5118), real messages, property tests and the regression hash.

mod corpus;
mod proptest;
mod regress;
mod torture;
mod write;
