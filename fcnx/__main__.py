from fcnx.cli import main

main()
