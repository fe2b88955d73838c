from endpointgen.cli import main

main()
