//! LEB128 varints, the packed forms' unit (the books' steps, a savings
//! account's changes): seven bits a byte, low first, the high bit set on
//! every byte but a varint's last.

/// Appends `value`.
pub(crate) fn put(bytes: &mut Vec<u8>, mut value: u128) {
    if value < 0x80 {
        // Most are (lengths, scales, small amounts): one byte, and no
        // 128-bit shifts.
        bytes.push(value as u8);
        return;
    }
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// The varint at `*at`, moving `*at` past it; for bytes only [`put`] wrote.
pub(crate) fn take(bytes: &[u8], at: &mut usize) -> u128 {
    let mut value = 0u128;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u128::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// [`take`] for bytes read from outside: `None` where they run out or the
/// value does not fit 128 bits.
pub(crate) fn take_checked(bytes: &[u8], at: &mut usize) -> Option<u128> {
    let mut value = 0u128;
    let mut shift = 0u32;
    loop {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let part = u128::from(byte & 0x7f);
        if shift >= 128 || (shift > 121 && part >> (128 - shift) != 0) {
            return None;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

/// Where the varint that ends just before `end` starts: after the byte
/// below 0x80 before its own last one (or at the start), so a list of
/// varints can be walked back from its end.
pub(crate) fn start_before(bytes: &[u8], end: usize) -> usize {
    let mut at = end - 1;
    while at > 0 && bytes[at - 1] & 0x80 != 0 {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every width round-trips, forwards, checked, and walked back.
    #[test]
    fn values_of_every_width_read_back_both_ways() {
        let values: Vec<u128> = (0..128)
            .map(|bit| 1u128 << bit)
            .chain([0, 127, 128, u128::MAX])
            .collect();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for value in &values {
            put(&mut bytes, *value);
            ends.push(bytes.len());
        }
        let mut at = 0;
        let mut checked_at = 0;
        for (value, end) in values.iter().zip(&ends) {
            assert_eq!(take(&bytes, &mut at), *value);
            assert_eq!(take_checked(&bytes, &mut checked_at), Some(*value));
            assert_eq!(at, *end);
        }
        let mut end = bytes.len();
        for (i, value) in values.iter().enumerate().rev() {
            let start = start_before(&bytes, end);
            assert_eq!(start, if i == 0 { 0 } else { ends[i - 1] });
            let mut at = start;
            assert_eq!(take(&bytes, &mut at), *value);
            end = start;
        }
        assert_eq!(take_checked(&[0x80], &mut 0), None);
        assert_eq!(take_checked(&[0xff; 19], &mut 0), None);
    }
}
