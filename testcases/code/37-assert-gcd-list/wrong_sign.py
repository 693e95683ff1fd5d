def gcd_list(nums):
    g = 0
    for x in nums:
        a, b = x, g
        while b:
            a, b = b, a % b
        g = a
    return g
