"""The applications under test. Each reads the media folder from ``BENCH_MEDIA``
and serves only the files it found there at start-up."""
