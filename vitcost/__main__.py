from vitcost.cli import main

main()
