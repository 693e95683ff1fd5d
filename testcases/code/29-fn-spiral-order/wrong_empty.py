class Solution:
    def spiral_order(self, matrix):
        rows = [list(r) for r in matrix]
        out = []
        n_cells = len(rows) * len(rows[0])
        while len(out) < n_cells:
            out.extend(rows.pop(0))
            # rotate the rest counter-clockwise
            rows = [list(r) for r in zip(*rows)][::-1]
        return out
