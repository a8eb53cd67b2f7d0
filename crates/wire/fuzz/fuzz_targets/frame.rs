//! `UdpFrame::parse` on arbitrary bytes: never panics, and a frame that
//! parses has its payload inside the frame, ending where its UDP length
//! says (padding after it ignored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::frame::UdpFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = UdpFrame::parse(data) {
        let r = f.payload_range();
        assert!(r.start <= r.end && r.end <= data.len());
        assert_eq!(f.payload(), &data[r]);
        assert_eq!(f.frame().len(), data.len());
    }
});
