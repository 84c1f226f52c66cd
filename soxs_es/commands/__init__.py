"""One module per command family, each offering a library function that returns a value (the CLI prints it)."""
