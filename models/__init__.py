"""editq's tables, the job state enum and its transition table.

Nothing here performs I/O: the package only describes data, so the application (``worker``)
and the migrations (``migrations``) can both depend on it.
"""
