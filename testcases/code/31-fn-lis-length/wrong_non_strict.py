from bisect import bisect_right


class Solution:
    def length_of_lis(self, nums):
        tails = []
        for x in nums:
            k = bisect_right(tails, x)
            if k == len(tails):
                tails.append(x)
            else:
                tails[k] = x
        return len(tails)
