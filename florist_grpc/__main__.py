from florist_grpc.cli import main

main()
