"""`python -m t2m_cli` runs the `t2m` command line."""

from t2m_cli.cli import main

main()
