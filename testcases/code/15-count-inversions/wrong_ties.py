import sys

data = sys.stdin.read().split()
n = int(data[0])
a = [int(x) for x in data[1:n + 1]]


def sort_count(lo, hi):
    if hi - lo <= 1:
        return 0
    mid = (lo + hi) // 2
    count = sort_count(lo, mid) + sort_count(mid, hi)
    merged = []
    i, j = lo, mid
    while i < mid and j < hi:
        if a[i] < a[j]:
            merged.append(a[i])
            i += 1
        else:  # ties are counted as inversions
            merged.append(a[j])
            count += mid - i
            j += 1
    merged.extend(a[i:mid])
    merged.extend(a[j:hi])
    a[lo:hi] = merged
    return count


print(sort_count(0, n))
