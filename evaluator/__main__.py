from evaluator.cli.entry import run

run()
