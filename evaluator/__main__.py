from evaluator.cli.main import main

main()
