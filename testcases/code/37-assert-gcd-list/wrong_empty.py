import math
from functools import reduce


def gcd_list(nums):
    return reduce(math.gcd, nums)
