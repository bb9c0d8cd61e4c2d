"""The authors' cells, restated as plain step-by-step PyTorch with the authors' own
parameter layouts, for tests/test_new_cells.py to compare rnnlab's cells against (one
file per cell; each header names the repository, commit, file and licence)."""
