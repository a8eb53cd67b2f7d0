//! Integration tests of the fleet logic: the announcement state machine
//! driven through a day of health changes.

mod announce_day;
