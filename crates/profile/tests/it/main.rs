//! Integration tests of the hardware profiles against recorded host fixtures.

mod fixtures;
