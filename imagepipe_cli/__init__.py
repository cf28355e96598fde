"""`imagepipe`: the command-line client of the image pipeline's HTTP API (README, section "CLI")."""
