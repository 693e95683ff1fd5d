class Solution:
    def merge_k_lists(self, lists):
        result = lists[0]
        for other in lists[1:]:
            merged = []
            i = j = 0
            while i < len(result) and j < len(other):
                if result[i] <= other[j]:
                    merged.append(result[i])
                    i += 1
                else:
                    merged.append(other[j])
                    j += 1
            result = merged + result[i:] + other[j:]
        return result
