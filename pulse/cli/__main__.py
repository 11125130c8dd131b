"""`python -m pulse.cli`."""
from pulse.cli import main

main()
