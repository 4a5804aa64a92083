"""Search kernels and indexes over rows and bitmaps (no files, no collections)."""
