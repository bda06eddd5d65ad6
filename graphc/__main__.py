"""`python -m graphc`: the command line without the installed script."""
from .cli import main

raise SystemExit(main())
