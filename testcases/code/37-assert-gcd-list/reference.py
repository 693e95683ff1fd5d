import math


def gcd_list(nums):
    g = 0
    for x in nums:
        g = math.gcd(g, x)
    return g
