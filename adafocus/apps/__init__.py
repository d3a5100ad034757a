"""Applications on top of the library: the `adafocus` command line and what its commands run
(train, eval, infer, bench, demo, fL pretraining for the demo)."""
