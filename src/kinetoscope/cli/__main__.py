from kinetoscope.cli.app import main

main()
