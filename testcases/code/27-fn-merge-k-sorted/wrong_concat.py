class Solution:
    def merge_k_lists(self, lists):
        out = []
        for lst in lists:
            out.extend(lst)
        return out
