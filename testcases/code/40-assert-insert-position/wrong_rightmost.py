import bisect


def insert_position(sorted_list, x):
    return bisect.bisect_right(sorted_list, x)
