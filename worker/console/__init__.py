"""The ops console: server-rendered pages at ``/console`` in the API process.

Jinja2 templates and a little plain JavaScript served from the package: no build step, no
CDN, works offline. Operators are the console's own (``EDITQ_CONSOLE_OPERATORS``), apart
from producer keys, each with a role: ``read`` sees everything, ``operate`` may act too.
``operators.py`` reads them, ``access.py`` holds sessions, roles and CSRF tokens and the
login, ``pages.py`` the pages and actions, and ``app.py`` mounts it all on the API.
"""
