from sys2distill.cli import main

main()
