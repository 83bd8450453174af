from etl.cli.app import main

main()
