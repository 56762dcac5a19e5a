"""Coverage-guided fuzzing (``make fuzz``): the protocol's parser, the server's handler and the agent's core,
under atheris. targets.py holds the targets (plain functions, no atheris: the unit suite runs them over the
seed corpus); engine.py runs one under libFuzzer; __main__.py runs them all for a bounded time and reports."""
