import heapq


class Solution:
    def merge_k_lists(self, lists):
        return list(heapq.merge(*lists))
