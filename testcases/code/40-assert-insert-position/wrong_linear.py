def insert_position(sorted_list, x):
    for i, v in enumerate(sorted_list):
        if v >= x:
            return i
    return len(sorted_list)
