//! Splitting an item list into batches and putting the batches' results
//! back together, as pure functions.

use std::ops::Range;

use crate::ClientError;

/// The index ranges of the batches of `len` items, at most `size` each, in
/// order. No batch for no items.
pub(crate) fn batch_ranges(len: usize, size: usize) -> Vec<Range<usize>> {
    assert!(size > 0, "batch size must be at least 1");
    (0..len.div_ceil(size))
        .map(|k| k * size..((k + 1) * size).min(len))
        .collect()
}

/// Checks that a batch of `sent` items got as many results.
pub(crate) fn check_count<T>(sent: usize, results: &[T]) -> Result<(), ClientError> {
    if results.len() == sent {
        Ok(())
    } else {
        Err(ClientError::ResultCount {
            sent,
            received: results.len(),
        })
    }
}

/// Concatenates the batches' results, given in any order as
/// `(batch index, results)`, back into item order. Every batch index in
/// `0..ranges.len()` must appear once, with `ranges[index].len()` results.
pub(crate) fn reassemble<T>(
    ranges: &[Range<usize>],
    mut parts: Vec<(usize, Vec<T>)>,
) -> Result<Vec<T>, ClientError> {
    parts.sort_by_key(|(index, _)| *index);
    let indices: Vec<usize> = parts.iter().map(|(index, _)| *index).collect();
    assert!(
        indices.iter().copied().eq(0..ranges.len()),
        "one result list per batch, got batches {indices:?} of {}",
        ranges.len()
    );
    let total = ranges.last().map_or(0, |r| r.end);
    let mut out = Vec::with_capacity(total);
    for ((_, results), range) in parts.into_iter().zip(ranges) {
        check_count(range.len(), &results)?;
        out.extend(results);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_items_in_order() {
        assert_eq!(batch_ranges(0, 4), Vec::<Range<usize>>::new());
        assert_eq!(batch_ranges(3, 4), vec![(0..3)]);
        assert_eq!(batch_ranges(4, 4), vec![(0..4)]);
        assert_eq!(batch_ranges(10, 3), [0..3, 3..6, 6..9, 9..10]);
        assert_eq!(batch_ranges(5, 1), [0..1, 1..2, 2..3, 3..4, 4..5]);
        for len in 0..50 {
            for size in 1..12 {
                let r = batch_ranges(len, size);
                assert_eq!(r.iter().map(Range::len).sum::<usize>(), len);
                assert!(r.iter().all(|b| (1..=size).contains(&b.len())));
                assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            }
        }
    }

    #[test]
    #[should_panic(expected = "at least 1")]
    fn zero_batch_size_is_a_bug() {
        batch_ranges(3, 0);
    }

    #[test]
    fn results_are_reassembled_in_item_order_whatever_order_batches_finish() {
        let ranges = batch_ranges(10, 3);
        let parts: Vec<(usize, Vec<usize>)> = vec![
            (2, (6..9).collect()),
            (0, (0..3).collect()),
            (3, vec![9]),
            (1, (3..6).collect()),
        ];
        assert_eq!(reassemble(&ranges, parts).unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(reassemble::<u8>(&[], vec![]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_batch_with_the_wrong_result_count_is_an_error() {
        let ranges = batch_ranges(5, 2);
        let short = vec![(0, vec![0, 1]), (1, vec![2]), (2, vec![4])];
        assert!(matches!(
            reassemble(&ranges, short),
            Err(ClientError::ResultCount { sent: 2, received: 1 })
        ));
        let long = vec![(0, vec![0, 1]), (1, vec![2, 3]), (2, vec![4, 5])];
        assert!(matches!(
            reassemble(&ranges, long),
            Err(ClientError::ResultCount { sent: 1, received: 2 })
        ));
        assert!(check_count(3, &[1, 2, 3]).is_ok());
    }
}
