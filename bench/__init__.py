"""``python -m bench``: editq's benchmark on the real stack (``make bench``)."""
