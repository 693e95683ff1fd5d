class Solution:
    def word_break(self, s, words):
        vocab = set(words)
        lengths = sorted({len(w) for w in vocab if w})
        ok = [False] * (len(s) + 1)
        ok[0] = True
        for end in range(1, len(s) + 1):
            for length in lengths:
                if length > end:
                    break
                if ok[end - length] and s[end - length:end] in vocab:
                    ok[end] = True
                    break
        return ok[len(s)]
