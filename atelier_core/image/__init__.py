"""Image operations on pixels and sizes: aspect lock and restore, stitch layout, CIELAB, alignment, Poisson, diff-merge."""
