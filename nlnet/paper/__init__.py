"""The paper's tables (Tables 2 and 3) from run folders: published vs. nlnet results, cost, progress."""
