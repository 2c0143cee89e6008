"""Use cases: deploy, start, claim, complete, correlate, fire timers, audit."""
