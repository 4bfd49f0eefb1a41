//! Searching a list in order from where the search is expected to end:
//! a loan's installments by due date from its first unpaid one, and the
//! sums of what fell due from there too, then from the last answer.

/// The number of items at the start of a list of `len` for which
/// `holds(index)` is true, when it is true for a prefix (as
/// [`slice::partition_point`]), searched outwards from `near` (1, 2, 4,
/// ... items either way, then halving): the items read are those around
/// `near`, where the prefix is expected to end, not the middles of the
/// whole list.
pub(crate) fn partition_point_near_by(
    len: usize,
    near: usize,
    mut holds: impl FnMut(usize) -> bool,
) -> usize {
    let near = near.min(len);
    // The prefix ends in lo..=hi: `holds` is true before lo and false at hi
    // (or hi is the length).
    let (mut lo, mut hi);
    if near < len && holds(near) {
        (lo, hi) = (near + 1, len);
        let mut step = 1;
        while near + step < len {
            if holds(near + step) {
                lo = near + step + 1;
                step *= 2;
            } else {
                hi = near + step;
                break;
            }
        }
    } else {
        (lo, hi) = (0, near);
        let mut step = 1;
        while step <= near {
            if holds(near - step) {
                lo = near - step + 1;
                break;
            }
            hi = near - step;
            step *= 2;
        }
    }
    while lo < hi {
        let middle = lo + (hi - lo) / 2;
        if holds(middle) {
            lo = middle + 1;
        } else {
            hi = middle;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_where_a_prefix_ends_from_any_place() {
        for count in [0u64, 1, 3, 4, 5, 8, 9, 30] {
            let plain: Vec<u64> = (1..=count).collect();
            for bound in 0..=count + 1 {
                let expected = plain.partition_point(|i| *i <= bound);
                for near in 0..=count as usize + 2 {
                    let found =
                        partition_point_near_by(plain.len(), near, |index| plain[index] <= bound);
                    assert_eq!(found, expected, "bound {bound} near {near}");
                }
            }
        }
    }
}
