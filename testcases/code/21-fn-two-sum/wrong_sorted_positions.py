class Solution:
    def two_sum(self, nums, target):
        a = sorted(nums)
        i, j = 0, len(a) - 1
        while i < j:
            s = a[i] + a[j]
            if s == target:
                return [i, j]
            if s < target:
                i += 1
            else:
                j -= 1
        return []
