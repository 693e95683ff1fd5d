import sys

first, _, text = sys.stdin.read().partition("\n")
k = int(first) % 26
out = []
for ch in text:
    if ch.isalpha():
        base = 65 if ch.isupper() else 97
        out.append(chr((ord(ch) - base + k) % 26 + base))
    else:
        out.append(ch)
sys.stdout.write("".join(out))
