"""Graph -> Graph rewrites, each testable alone: inline, fold, cleanup, fuse."""
