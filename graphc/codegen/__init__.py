"""From lowered functions to an imported module: render (the backend's Jinja2 template),
cache (writing, finding and importing modules), fingerprint (the compile cache's key)."""
