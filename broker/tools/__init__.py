"""The tools around the runtime: the command line, the demo, replay and tail, the embedded
broker and the benchmark. The runtime (``broker/``) never imports them."""
