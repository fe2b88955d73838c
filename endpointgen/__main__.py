from endpointgen.console import main

main()
