"""editq: an asynchronous job system for AI image edits."""
