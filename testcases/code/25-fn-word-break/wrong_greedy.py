class Solution:
    def word_break(self, s, words):
        vocab = sorted(set(words), key=len, reverse=True)
        pos = 0
        while pos < len(s):
            for w in vocab:
                if w and s.startswith(w, pos):
                    pos += len(w)
                    break
            else:
                return False
        return True
