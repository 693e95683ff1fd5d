class Solution:
    def two_sum(self, nums, target):
        index = {x: i for i, x in enumerate(nums)}
        for i, x in enumerate(nums):
            if target - x in index:
                return [i, index[target - x]]
        return []
