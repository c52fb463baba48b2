"""The `demo` command: a small traced sample agent and an embedded experiment to run the pipeline on."""
