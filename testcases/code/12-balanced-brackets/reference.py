import sys

PAIRS = {")": "(", "]": "[", "}": "{"}


def balanced(s):
    stack = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif ch in PAIRS:
            if not stack or stack.pop() != PAIRS[ch]:
                return False
    return not stack


lines = sys.stdin.read().split("\n")
t = int(lines[0])
for k in range(1, t + 1):
    s = lines[k].strip() if k < len(lines) else ""
    print("YES" if balanced(s) else "NO")
