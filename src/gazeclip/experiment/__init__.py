"""Multi-seed experiments over training and evaluation: `runner.run_experiment(config)`;
`gazeclip experiment run` (`cli`). It sits above the modes because it drives both."""
