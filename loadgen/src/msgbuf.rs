//! A bounded byte writer over a caller's buffer ([`MsgBuf`]): what every
//! message the generator sends is written with, without allocating.

use std::net::SocketAddr;

/// A writer over a fixed buffer. Writing past the end sets a flag instead of
/// panicking or growing; the caller checks [`MsgBuf::overflowed`] and counts
/// the message as not sent.
pub struct MsgBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> MsgBuf<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        MsgBuf {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Appends bytes.
    #[inline]
    pub fn put(&mut self, b: &[u8]) {
        let end = self.len + b.len();
        if end > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
    }

    /// Appends `n` in decimal.
    pub fn put_u64(&mut self, mut n: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&tmp[i..]);
    }

    /// Appends `n` in lower-case hex.
    pub fn put_hex(&mut self, mut n: u64) {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(n & 15) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.put(&tmp[i..]);
    }

    /// Appends `n` in lower-case hex, left-padded with zeros to `width`
    /// digits, so identifiers keep one length (and datagrams of one kind
    /// one size, which lets them leave in one segmented send).
    pub fn put_hex_padded(&mut self, n: u64, width: usize) {
        let digits = if n == 0 {
            1
        } else {
            (64 - n.leading_zeros() as usize).div_ceil(4)
        };
        for _ in digits..width {
            self.put(b"0");
        }
        self.put_hex(n);
    }

    /// Appends `n` in decimal, left-padded with zeros to `width` digits.
    pub fn put_u64_padded(&mut self, n: u64, width: usize) {
        let digits = if n == 0 { 1 } else { n.ilog10() as usize + 1 };
        for _ in digits..width {
            self.put(b"0");
        }
        self.put_u64(n);
    }

    /// Appends an address as `ip:port` (`[ip]:port` for IPv6).
    pub fn put_addr(&mut self, a: SocketAddr) {
        use std::io::Write;
        let mut tmp = [0u8; 64];
        let mut cur = std::io::Cursor::new(&mut tmp[..]);
        let _ = write!(cur, "{a}");
        let n = cur.position() as usize;
        self.put(&tmp[..n]);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when some write did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_past_the_end_flags_overflow_instead_of_panicking() {
        let mut b = [0u8; 4];
        let mut o = MsgBuf::new(&mut b);
        o.put(b"12345");
        assert!(o.overflowed());
    }

    #[test]
    fn padded_numbers_keep_their_width() {
        let mut b = [0u8; 16];
        let mut o = MsgBuf::new(&mut b);
        o.put_u64_padded(42, 4);
        assert_eq!(o.as_bytes(), b"0042");
    }
}
