"""On-demand benchmarks: `make bench` or `python -m benchmarks [mta] [mail] [grading]`."""
