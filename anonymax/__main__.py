"""`python -m anonymax serve ...`: the `anonymax` command (`anonymax.commands`)."""

from anonymax.commands import main

main()
