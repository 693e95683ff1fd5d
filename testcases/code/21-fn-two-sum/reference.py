class Solution:
    def two_sum(self, nums, target):
        index = {}
        for j, x in enumerate(nums):
            i = index.get(target - x)
            if i is not None:
                return (i, j)
            index.setdefault(x, j)
        return ()
